"""conv(+BN) -> ReLU6 is one fused pattern for the .tflite route's quantizer
(convert/tflite_int8_annotations.py, annotate_conv_clamps).

LiteRT fuses a conv and the ReLU6 behind it into one CONV_2D/DEPTHWISE_CONV_2D (fused activation
RELU6) and keeps only the ReLU6's output range; an observer on the conv's raw output is calibrated
for nothing. On MobileNetV2 there were 101 HistogramObservers against litert-torch's stock 65, and
HistogramObserver was most of the calibration time. The planted net (tests/planted/clamp_torch.py,
trained on digits) is conv -> BN -> ReLU6 -> depthwise conv -> BN -> ReLU6 -> pointwise conv -> mean."""

from __future__ import annotations

import collections

import pytest

from edgeship.convert import ConvertOptions, get_route
from edgeship.convert.torch_tflite import pt2e_quantizer
from edgeship.data import load_data
from edgeship.quantize import get_recipe
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.sources import load_model

from conftest import REPO

PLANTED = f"{REPO / 'tests' / 'planted' / 'clamp_torch.py'}:build"


@pytest.fixture(scope="module")
def planted():
    return load_model(PLANTED)


def _prepared(module, example):
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    graph = torch.export.export(module, example).module()
    return prepare_pt2e(graph, pt2e_quantizer())


def _is_observer(node, gm) -> bool:
    return node.op == "call_module" and "observer" in type(gm.get_submodule(node.target)).__name__.lower()


def _is_conv(node) -> bool:
    return node.op == "call_function" and getattr(node.target, "_opname", None) in ("conv1d", "conv2d", "convolution")


def test_no_observer_between_a_conv_and_the_relu6_it_feeds(planted):
    import torch

    gm = _prepared(planted.obj, (torch.zeros(1, 1, 8, 8),))
    clamps = [n for n in gm.graph.nodes if getattr(n.target, "_opname", None) == "hardtanh"]
    assert len(clamps) == 2
    for clamp in clamps:
        assert _is_conv(clamp.args[0]), f"{clamp.name} reads {clamp.args[0].name}, not the conv"
        assert [u for u in clamp.users if _is_observer(u, gm)], f"{clamp.name}'s output is not observed"
    observed = [n.args[0] for n in gm.graph.nodes if _is_observer(n, gm)]
    assert not [n.name for n in observed if _is_conv(n) and len(n.users) == 1
                and getattr(next(iter(n.users)).target, "_opname", None) == "hardtanh"]
    kinds = collections.Counter(type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes
                                if _is_observer(n, gm))
    # input, the two ReLU6s, the pointwise conv, the mean (before: 2 more, one per conv before a ReLU6)
    assert kinds["HistogramObserver"] == 5, kinds


def test_a_conv_with_another_reader_keeps_its_observer():
    """Only a conv read by the clamp alone is fused: a second reader needs the raw output quantized."""
    import torch

    class Both(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.nn.functional.relu6(y) + y

    gm = _prepared(Both().eval(), (torch.zeros(1, 1, 8, 8),))
    conv = next(n for n in gm.graph.nodes if _is_conv(n))
    assert [u for u in conv.users if _is_observer(u, gm)]


def test_clamps_litert_fuses_are_fused_and_others_not():
    """clamp(0, 6) and clamp(-1, 1) are LiteRT's RELU6 and RELU_N1_TO_1 (checked: the converted
    .tflite is the same 3 CONV_2D either way); clamp(0, 4) is no fused activation: its conv is observed."""
    import torch

    class Clamps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = (torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(3))

        def forward(self, x):
            x = torch.clamp(self.c1(x), 0.0, 6.0)
            x = torch.clamp(self.c2(x), min=-1.0, max=1.0)
            return torch.clamp(self.c3(x), 0.0, 4.0)

    gm = _prepared(Clamps().eval(), (torch.zeros(1, 4, 8, 8),))
    convs = [n for n in gm.graph.nodes if _is_conv(n)]
    assert [any(_is_observer(u, gm) for u in c.users) for c in convs] == [False, False, True]


@pytest.mark.slow
def test_the_fused_tflite_is_all_int8_and_accurate(planted, tmp_path):
    from edgeship.runtime.standalone.tflite import inspect_bytes

    calib = load_data("digits:train", planted.io).take(100)
    test = load_data("digits:test", planted.io).take(100)
    path = tmp_path / "int8.tflite"
    get_route("torch", "tflite").load()(planted, get_recipe("int8"), calib, path, ConvertOptions())
    details = inspect_bytes(path.read_bytes())
    ops = collections.Counter()
    for op in details["ops"]:
        ops[op["op"]] += op["count"]
    snr = score(planted.run(test.arrays), run_artifact(path, "tflite", samples_of(test.arrays)))["snr_db"]
    # conv1 has one input channel: LiteRT writes it as a DEPTHWISE_CONV_2D too
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == 3 and not ops["RELU6"], ops
    assert details["delegated_ops"] == details["total_ops"], details["delegate"]
    assert snr > 20, snr  # measured: 24.7 dB (bench: all int8, tests/test_tflite_float_layer_clamp.py)
