"""Accuracy-aware int8 on torch -> .onnx: the layers kept in float are the nodes onnxruntime's
quantize_static excludes, found by the module scopes torch.onnx's dynamo exporter writes.

The planted fragile layer (tests/planted/fragile_torch.py: one activation channel 1000x the others
inside `fragile`) ruins int8; with `--max-drop 1 --metric top1` the search keeps `fragile` float.
The artifact is then read with onnx itself: `fragile`'s two convs take float32 weights with no
DequantizeLinear before them, the other conv and the linears take int8 weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.errors import InputError

FRAGILE = f"{Path(__file__).resolve().parent / 'planted' / 'fragile_torch.py'}:build"


def _weight_dtypes(path: Path) -> dict[str, str]:
    """Conv/Gemm node -> the element type its weight reaches it in ('int8' through a DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    out = {}
    for n in graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = producer.get(n.input[1])
        if w is not None and w.op_type == "DequantizeLinear":
            out[n.name] = onnx.TensorProto.DataType.Name(inits[w.input[0]].data_type).lower()
        elif n.input[1] in inits:
            out[n.name] = onnx.TensorProto.DataType.Name(inits[n.input[1]].data_type).lower()
    return out


def test_the_fragile_layer_stays_float_in_the_onnx(tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", FRAGILE, "--to", "onnx", "--quant", "int8", "--calib", "digits:train",
                                 "--calib-samples", "100", "--eval", "digits:test", "--calibration", "minmax",
                                 "--max-drop", "1", "--metric", "top1",
                                 "--cle", "off",  # CLE auto (the default) rescues the fragile layer: no float layer
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    aa = art["accuracy_aware"]
    assert aa["kept_float"] == ["fragile"] and aa["met"]
    assert aa["drop_before"] > 20 and aa["drop_after"] <= 1.0
    assert "kept float: fragile" in art["route"] and art["smoke"]["status"] == "pass"
    dtypes = _weight_dtypes(out / art["path"])
    assert sum(d == "float" for d in dtypes.values()) == 2  # fragile.expand, fragile.project
    assert sum(d == "int8" for d in dtypes.values()) == 3  # conv1, fc1, fc2


def test_a_layer_the_graph_lacks_is_named(tmp_path):
    from edgeship.convert.onnx_common import layer_nodes
    from edgeship.convert.torch_onnx import export_float
    from edgeship.sources import load_model

    proto, _, _ = export_float(load_model(FRAGILE))
    assert len(layer_nodes(proto, ["fragile"])) >= 3  # two convs and the relu between them
    with pytest.raises(InputError, match="layer\\(s\\) fragil\\b") as e:
        layer_nodes(proto, ["fragil"])
    assert "fragile" in e.value.hint


def test_a_conv_fused_with_its_batchnorm_is_found_by_its_weight():
    """The exporter folds BatchNorm into the conv and scopes the fused Conv to the BatchNorm: the
    conv layer is found through the weight it reads."""
    import torch

    from edgeship.convert.onnx_common import layer_nodes
    from edgeship.convert.torch_onnx import export_float
    from edgeship.sources import model_from_torch

    class ConvBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4 * 6 * 6, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))

    model = model_from_torch(ConvBN().eval(), (torch.zeros(1, 1, 8, 8),), "convbn", "test", None)
    proto, _, _ = export_float(model)
    conv_nodes = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(conv_nodes) == 1 and "bn" in str(list(conv_nodes[0].metadata_props))  # fused, scoped to bn
    assert layer_nodes(proto, ["conv"]) == (conv_nodes[0].name,)
