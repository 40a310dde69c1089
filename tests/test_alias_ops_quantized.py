"""ATen alias ops (torch.multiply, torch.subtract, torch.true_divide: what Keras' torch backend calls for
keras.ops) quantize and lower like the ops they alias, and a Keras-style squeeze-excite block loses all of its
layout permutes.

Before: XNNPACK's and litert-torch's PT2E quantizers annotate aten.mul/sub/div only, so every alias stayed
float inside an int8 graph (a Keras MobileNetV3-Small's 9 squeeze-excite gates and their products: 48 -> 59
XNNConvert in its int8 .pte), and `sink_permutes` stopped at a `multiply` and at a mean with keepdim, which left
40 permutes in that model's graph (fp32 .pte 216 ops -> 129 with both fixed)."""

from __future__ import annotations

import collections

import numpy as np
import torch

from edgeship.convert import keras_graph_passes as kp
from edgeship.convert import torch_passes
from edgeship.convert.torch_common import to_tensors
from edgeship.convert.torch_pte import pt2e_quantize
from edgeship.convert.xnnpack_passes import prepare_for_xnnpack

F = torch.nn.functional


class AliasGate(torch.nn.Module):
    """Two convs multiplied with torch.multiply (a gated conv), then a 1x1 conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.gate = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(torch.multiply(self.conv(x), self.gate(x)))


class Aliases(torch.nn.Module):
    def forward(self, x):
        return torch.true_divide(torch.multiply(torch.subtract(x, 1.0), x), 3.0)


def _samples(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal((1, 3, 8, 8)).astype(np.float32)] for _ in range(n)]


class _Calib:
    def __init__(self, samples):
        self._samples = samples

    def samples(self):
        return iter(self._samples)

    def __len__(self):
        return len(self._samples)


def test_alias_ops_are_renamed_to_the_ops_they_alias():
    x = torch.randn(2, 5)
    gm = torch.export.export(Aliases(), (x,)).module()
    names = collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
    assert names["aten.multiply.Tensor"] == 1 and names["aten.subtract.Tensor"] == 1  # torch.export keeps them
    want = gm(x)
    assert torch_passes.aliases_to_canonical_ops(gm) == 3
    names = collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
    assert not any(a in name for name in names for a in ("multiply", "subtract", "divide"))
    assert names["aten.mul.Tensor"] == 1 and names["aten.sub.Tensor"] == 1 and names["aten.div.Tensor"] == 1
    assert torch.equal(gm(x), want)


def test_the_xnnpack_quantizer_now_quantizes_the_product():
    """Every mul of the quantized graph reads dequantized inputs and feeds a quantize: int8 in, int8 out."""
    samples = _samples()
    examples = to_tensors(samples[0])
    program = torch.export.export(AliasGate().eval(), tuple(examples))
    prepared, done = prepare_for_xnnpack(program, examples, quantized=True)
    assert done.get("alias ops renamed") == 1
    quantized = pt2e_quantize(prepared, examples, _Calib(samples))
    muls = [n for n in quantized.graph.nodes if n.op == "call_function" and n.target == torch.ops.aten.mul.Tensor]
    assert muls, "the product is gone from the graph"
    for mul in muls:
        assert all("quantize_per_tensor" in str(u.target) for u in mul.users), mul.format_node()
        assert all("dequantize" in str(a.target) for a in mul.args if isinstance(a, torch.fx.Node)
                   and a.op == "call_function"), mul.format_node()
    with torch.no_grad():
        want, got = AliasGate().eval()(*examples), quantized(*examples)
    cos = float(F.cosine_similarity(want.flatten(), got.flatten(), dim=0))
    assert cos > 0.99


class KerasLikeSqueezeExcite(torch.nn.Module):
    """NHWC in, written as Keras' torch backend writes MobileNetV3's block: a permute pair around each conv,
    hard-swish, a squeeze-excite whose pool keeps its dims (GlobalAveragePooling2D(keepdims=True)) and whose
    gate and product are keras.ops.multiply (aten.multiply)."""

    def __init__(self, c=8):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.k1, self.k2 = torch.randn(3, 3, 3, c, generator=g), torch.randn(1, 1, c, c // 2, generator=g)
        self.k3, self.k4 = torch.randn(1, 1, c // 2, c, generator=g), torch.randn(1, 1, c, 4, generator=g)

    @staticmethod
    def _conv(x, k, padding=0):
        return F.conv2d(x.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), padding=padding).permute(0, 2, 3, 1)

    def forward(self, x):
        y = F.hardswish(self._conv(x, self.k1, 1))
        s = y.mean(dim=[1, 2], keepdim=True)
        s = F.relu(self._conv(s, self.k2))
        gate = torch.multiply(F.relu6(self._conv(s, self.k3) + 3.0), 1.0 / 6.0)
        return self._conv(torch.multiply(y, gate), self.k4)


def test_squeeze_excite_permutes_all_cancel():
    x = torch.randn(1, 6, 6, 3)
    module = KerasLikeSqueezeExcite().eval()
    gm = torch.export.export(module, (x,)).module()
    torch_passes.remove_identity_conversions(gm)
    torch_passes.fold_constant_layout_ops(gm)
    assert sum(1 for n in gm.graph.nodes if kp._op_name(n) == "permute") == 8  # in and out of 4 convs
    with torch.no_grad():
        want = module(x)
    done = kp.clean_layout_and_batchnorm(gm)
    assert done["alias ops renamed (multiply -> mul)"] == 2
    permutes = [n for n in gm.graph.nodes if kp._op_name(n) == "permute"]
    assert len(permutes) == 2, gm.graph  # the NHWC input's and the NHWC output's; the other six cancelled
    with torch.no_grad():
        got = gm(x)
    assert float((want - got).abs().max() / want.abs().max()) < 1e-5
