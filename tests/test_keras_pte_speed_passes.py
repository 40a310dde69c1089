"""Keras -> .pte speed passes (convert/xnnpack_quant_patterns.py): the int8 .pte of a
MobileNet-style block (conv -> ReLU6 -> ZeroPadding2D -> stride-2 depthwise conv -> ReLU6 ->
project conv -> residual add) runs every ReLU6 inside its conv.
Checked on the graph (op counts read back from the .pte, q/dq parameters) and the numbers, never
on timing (that is bench/graph_quality.py)."""

from __future__ import annotations

import numpy as np
import torch

from edgeship.convert import torch_pte
from edgeship.convert.base import ConvertOptions
from edgeship.convert.xnnpack_quant_patterns import (
    clamp_fusing_quantizer,
    pad_after_permute,
    relu6_to_hardtanh,
)
from edgeship.data import Dataset
from edgeship.model import TensorSpec
from edgeship.quantize.recipes import get_recipe

aten = torch.ops.aten
F = torch.nn.functional


class Block(torch.nn.Module):
    """The Keras MobileNetV2 block as its torch-backend graph has it (BatchNorm folded): relu6
    as aten.relu6, an asymmetric zero pad before a valid stride-2 depthwise conv, a residual add."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.expand = torch.nn.Conv2d(8, 24, 1)
        self.dw = torch.nn.Conv2d(24, 24, 3, stride=2, groups=24)
        self.project = torch.nn.Conv2d(24, 8, 1)
        self.expand2 = torch.nn.Conv2d(8, 24, 1)
        self.dw2 = torch.nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.project2 = torch.nn.Conv2d(24, 8, 1)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        y = F.relu6(self.expand(x))
        y = F.pad(y, (0, 1, 0, 1))  # Keras' correct_pad for an even size: ((0, 1), (0, 1))
        y = F.relu6(self.dw(y))
        y = self.project(y)
        z = F.relu6(self.dw2(F.relu6(self.expand2(y))))
        return y + self.project2(z)


def _program():
    net = Block().eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32))
    return net, x, torch.export.export(net, (x,))


def _calib(n=16):
    arr = np.random.default_rng(1).uniform(-1, 1, (n, 3, 16, 16)).astype(np.float32)
    return Dataset("uniform", [arr], [TensorSpec("x", arr.shape, "float32")])


def _xnn_ops(path) -> dict[str, int]:
    from edgeship.runtime.standalone.executorch import inspect_artifact

    return {o["op"]: o["count"] for o in inspect_artifact(path)["ops"]}


def _run_pte(buffer, x):
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    load_kernel_libraries(_C)
    return _C._load_program_from_buffer(buffer).load_method("forward").call([x])[0].numpy()


def test_relu6_to_hardtanh_is_the_same_function():
    net, x, program = _program()
    gm = program.module()
    assert relu6_to_hardtanh(gm) == 5
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert aten.relu6.default not in targets
    assert targets.count(aten.hardtanh.default) == 5
    wide = x * 40  # values well past 6 and below 0, so the clamp is exercised
    with torch.no_grad():
        assert torch.equal(net(wide), gm(wide))
    assert relu6_to_hardtanh(gm) == 0  # idempotent


def _quantized(quantizer=None):
    net, x, program = _program()
    gm = torch_pte.pt2e_quantize(program, [x], _calib(), quantizer=quantizer)
    return net, x, gm


def _quant_node(node):
    return node.op == "call_function" and "quantize_per_tensor" in str(node.target) \
        and "dequantize" not in str(node.target)


def test_conv_relu6_is_one_quantized_pattern():
    net, x, gm = _quantized()
    clamps = [n for n in gm.graph.nodes if n.target == aten.hardtanh.default]
    assert len(clamps) == 5
    # no quantize between a conv and its clamp: the clamp reads the conv's float output directly
    assert all(c.args[0].target == aten.conv2d.default for c in clamps)
    # each clamp's output is quantized (the pattern's output), the conv's is not
    assert all(_quant_node(next(iter(c.users))) for c in clamps)
    assert not any(_quant_node(u) for c in clamps for u in c.args[0].users)
    with torch.no_grad():
        want, got = net(x).numpy(), gm(x).numpy()
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.99


def test_plain_xnnpack_quantizer_leaves_the_clamps_out_of_the_conv():
    """The failure the patterns exist for: XNNPACK's own quantizer quantizes each conv's output
    before its ReLU6 (and leaves aten.relu6 itself unannotated)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    stock = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    _, _, gm = _quantized(stock)
    relu6 = [n for n in gm.graph.nodes if n.target == aten.relu6.default]
    assert len(relu6) == 5
    assert not any(n.args[0].target == aten.conv2d.default for n in relu6)


def test_int8_pte_has_no_separate_clamp(tmp_path):
    net, x, program = _program()
    out = tmp_path / "block.int8.pte"
    result = torch_pte.export_pte(program, get_recipe("int8"), [x], _calib(), out, ConvertOptions(),
                                  source="torch.export")
    assert result.delegation["coverage"] == 1.0
    ops = _xnn_ops(out)
    assert ops.get("XNNClamp", 0) == 0, ops  # all five ReLU6 fused into their convs
    assert ops.get("XNNStaticConstantPad") == 1, ops  # the zero pad, in int8: no XNNConvert around it
    assert ops.get("XNNConvert") == 2, ops  # float input and output: one convert in, one out
    assert ops.get("XNNConv2d", 0) + ops.get("XNNDepthwiseConv2d", 0) == 7, ops
    with torch.no_grad():
        want = net(x).numpy()
    got = _run_pte(out.read_bytes(), x)
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.99


def test_fp32_pte_is_unchanged_and_exact(tmp_path):
    net, x, program = _program()
    out = tmp_path / "block.fp32.pte"
    torch_pte.export_pte(program, get_recipe("fp32"), [x], None, out, ConvertOptions(), source="torch.export")
    ops = _xnn_ops(out)
    assert ops.get("XNNClamp", 0) == 0, ops  # XNNPACK fuses float ReLU6 into the conv on its own
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(_run_pte(out.read_bytes(), x), want, rtol=1e-4, atol=1e-5)


def test_clamp_fusing_quantizer_respects_the_float_layer_filter():
    _net, x, program = _program()
    q = clamp_fusing_quantizer()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    q.set_global(get_symmetric_quantization_config(is_per_channel=True))
    q.set_filter_function(lambda node: False)  # every node kept in float
    gm = torch_pte.pt2e_quantize(program, [x], _calib(), quantizer=q)
    assert not any(_quant_node(n) for n in gm.graph.nodes)


def test_a_zero_pad_is_quantized_with_its_conv():
    """The pad before the stride-2 depthwise conv reads a dequantize and feeds the conv directly (no quantize
    between them), and the numbers stay. Observed after the pad, as
    XNNPACKQuantizer does, the pad ran in float between two XNNConvert."""
    net, x, gm = _quantized()
    (pad,) = [n for n in gm.graph.nodes if n.target == aten.pad.default]
    assert "dequantize_per_tensor" in str(pad.args[0].target)
    (user,) = pad.users
    assert user.target == aten.conv2d.default
    with torch.no_grad():
        want, got = net(x).numpy(), gm(x).numpy()
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.99


def test_pad_after_permute_keeps_values_and_meets_the_conv():
    """A Keras graph pads its NHWC input, then permutes to NCHW: the pad moves behind the permute."""

    class NHWCInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

        def forward(self, x):
            return self.conv(F.pad(x, (0, 0, 0, 1, 0, 1)).permute(0, 3, 1, 2))

    net = NHWCInput().eval()
    x = torch.randn(1, 16, 16, 3)
    gm = torch.export.export(net, (x,)).module()
    assert pad_after_permute(gm) == 1
    conv = next(n for n in gm.graph.nodes if n.target == aten.conv2d.default)
    assert conv.args[0].target == aten.pad.default and conv.args[0].args[1] == [0, 1, 0, 1]
    assert conv.args[0].args[0].target == aten.permute.default
    with torch.no_grad():
        torch.testing.assert_close(gm(x), net(x), rtol=0, atol=0)
