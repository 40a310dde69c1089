"""Keras graph passes (convert/keras_graph_passes.py): BatchNorm folded, NHWC<->NCHW permute pairs
cancelled, PReLU and 'same' max-pool padding rewritten, on graphs written the way Keras' torch
backend writes them, and end to end on a Keras MobileNetV2 and MTCNN's ONet (trained weights)
through the Keras -> .pte route: op counts and fp32 outputs unchanged within 1e-5 relative."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from edgeship.convert import keras_graph_passes as kp
from edgeship.convert import torch_passes
from edgeship.convert.xnnpack_passes import spatial_mean_keepdim

F = torch.nn.functional

RTOL = 1e-5


def _rel(a, b) -> float:
    return float((a - b).abs().max() / a.abs().max())


def _ops(gm) -> collections.Counter:
    return collections.Counter(kp._op_name(n) for n in gm.graph.nodes if n.op == "call_function")


class KerasLikeBlock(torch.nn.Module):
    """NHWC in; conv + BatchNorm + relu6, depthwise conv + BatchNorm, a residual add, a global
    average pool and a Dense, each op the way Keras' torch backend exports it (HWIO kernels
    permuted per call, a permute pair around each conv, BN as sub/rsqrt/mul/add, in place)."""

    def __init__(self, c=8):
        super().__init__()
        g = torch.Generator().manual_seed(0)

        def r(*s, lo=-1.0, hi=1.0):
            return torch.rand(*s, generator=g) * (hi - lo) + lo

        self.k1, self.k2 = r(3, 3, c, c), r(3, 3, 1, c)  # HWIO; depthwise HW1C
        self.bn = [(r(c), r(c, lo=0.2, hi=2.0), r(c, lo=0.5, hi=1.5), r(c)) for _ in range(2)]
        self.dense, self.dense_b = r(c, 5), r(5)

    def _bn(self, x, i):
        mean, var, gamma, beta = self.bn[i]
        y = x - mean
        y.mul_(torch.rsqrt(var + 1e-3) * gamma)
        return y.add_(beta)

    def forward(self, x):
        y = x.permute(0, 3, 1, 2).contiguous()
        y = F.conv2d(y, self.k1.permute(3, 2, 0, 1), padding=1).permute(0, 2, 3, 1)
        y = F.relu6(self._bn(y, 0))
        z = y.permute(0, 3, 1, 2).contiguous()
        z = F.conv2d(z, self.k2.permute(3, 2, 0, 1), padding=1, groups=z.shape[1]).permute(0, 2, 3, 1)
        z = self._bn(z, 1) + y
        z = z.mean(dim=[1, 2])
        return z @ self.dense + self.dense_b


def _keras_like_graph(module, x):
    gm = torch.export.export(module.eval(), (x,)).module()
    torch_passes.remove_identity_conversions(gm)
    torch_passes.fold_constant_layout_ops(gm)
    torch_passes.matmul_add_to_linear(gm)
    return gm


def test_batchnorm_folded_and_permutes_cancelled():
    x = torch.rand(1, 6, 6, 8)
    module = KerasLikeBlock()
    gm = _keras_like_graph(module, x)
    before = _ops(gm)
    assert before["permute"] == 4 and before["rsqrt"] == 2 and before["mul_"] == 2  # as Keras writes them
    with torch.no_grad():
        want = module(x)
    done = kp.clean_layout_and_batchnorm(gm)
    after = _ops(gm)
    assert done["BatchNorm/affine folded into conv or linear"] == 6  # (sub, mul, add) x 2
    assert after["permute"] == 1  # the input's NHWC -> NCHW; the others met their inverse
    assert not {"sub", "subtract", "mul", "mul_", "add_", "rsqrt", "contiguous"} & set(after)
    assert after["conv2d"] == 2 and after["add"] == 1 and after["linear"] == 1  # the residual add stays
    with torch.no_grad():
        got = gm(x)
    assert _rel(want, got) < RTOL
    assert sum(kp.clean_layout_and_batchnorm(gm).values()) == 0  # a fixed point
    spatial_mean_keepdim(gm)
    assert torch.export.export(gm, (x,)) is not None


def test_fold_affine_only_folds_per_channel_constants():
    class NotPerChannel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.rand(4, 3, 1, 1)
            self.full = torch.rand(1, 4, 5, 5)  # varies over space: cannot go into the conv

        def forward(self, x):
            return F.conv2d(x, self.w) * self.full

    x = torch.rand(1, 3, 5, 5)
    gm = torch.export.export(NotPerChannel().eval(), (x,)).module()
    assert kp.fold_affine_into_conv(gm) == 0


class KerasPReLUPool(torch.nn.Module):
    """Keras' PReLU (relu(x) + -alpha * relu(-x), alpha (1, 1, C) in NHWC) and a 'same' max pool
    (replicate pad, then pool), around a conv."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.k = torch.randn(3, 3, 3, 6, generator=g)
        self.alpha = torch.rand(1, 1, 6, generator=g)

    def forward(self, x):
        y = F.conv2d(x.permute(0, 3, 1, 2), self.k.permute(3, 2, 0, 1)).permute(0, 2, 3, 1)
        y = F.relu(y) + -self.alpha * F.relu(-y)
        y = y.permute(0, 3, 1, 2)
        y = F.max_pool2d(F.pad(y, [0, 1, 0, 1], mode="replicate"), 3, 2)
        return y.permute(0, 2, 3, 1)


def test_prelu_and_same_max_pool_rewritten():
    x = torch.randn(1, 10, 10, 3)
    module = KerasPReLUPool()
    gm = _keras_like_graph(module, x)
    with torch.no_grad():
        want = module(x)
    done = kp.clean_layout_and_batchnorm(gm)
    ops = _ops(gm)
    assert done["PReLU patterns -> prelu"] == 1 and ops["prelu"] == 1
    assert done["replicate pads before max pools -> -inf pads"] == 1 and ops["constant_pad_nd"] == 1
    assert not {"relu", "neg", "pad"} & set(ops)
    assert ops["permute"] == 2  # in and out: the model's own NHWC interface
    with torch.no_grad():
        got = gm(x)
    assert _rel(want, got) < RTOL


def test_replicate_pad_kept_when_a_window_could_miss_the_edge():
    class WidePad(torch.nn.Module):
        def forward(self, x):
            return F.max_pool2d(F.pad(x, [0, 2, 0, 2], mode="replicate"), 2, 2)

    gm = torch.export.export(WidePad(), (torch.rand(1, 2, 5, 5),)).module()
    assert kp.replicate_pad_to_neg_inf(gm) == 0


# ---------------------------------------------------------------------------------------------
# End to end: the Keras -> .pte route's child process, on real Keras models


def _keras_route(keras_model, path, recipe="fp32", calib=None):
    from edgeship.convert.base import ConvertOptions
    from edgeship.convert.keras_pte import convert
    from edgeship.quantize.recipes import RECIPES
    from edgeship.sources import load_model

    keras_model.save(path)
    model = load_model(str(path))
    return model, convert(model, RECIPES[recipe], calib, path.with_suffix(f".{recipe}.pte"), ConvertOptions())


def _run(path, x):
    from edgeship.runtime.standalone.executorch import Runner

    return Runner(path).run([x])


@pytest.mark.slow
def test_keras_mobilenet_v2_pte_is_lean_and_exact(tmp_path):
    """959 XNNPACK ops before the passes; now one partition of about the .tflite's count, with
    trained-like BatchNorm statistics (random, not the identity) and logits unchanged."""
    import keras

    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                           classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.2, 0.2, beta.shape),
                               rng.uniform(-0.2, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    m, result = _keras_route(model, tmp_path / "mnv2.keras")
    d = result.delegation
    assert d["coverage"] == 1.0 and d["partitions"] == 1 and d["total_ops"] <= 110, d
    x = rng.uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)
    want = np.asarray(model(x))
    got = _run(tmp_path / "mnv2.fp32.pte", x)[0]
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4  # XNNPACK's own sums vs TF's


@pytest.mark.slow
def test_keras_onet_delegates_whole(tmp_path):
    import mtcnn_nets

    net = mtcnn_nets.keras_net("onet")
    m, result = _keras_route(net, tmp_path / "onet.keras")
    d = result.delegation
    assert d["coverage"] == 1.0 and d["partitions"] == 1, d
    x = mtcnn_nets.example("onet", "NHWC")
    for want, got in zip(net(x), _run(tmp_path / "onet.fp32.pte", x)):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)


def test_a_copy_of_repeated_data_stays_for_the_view_after_it():
    """Keras' UpSampling2D under the torch backend: unsqueeze, expand, clone, view. The clone is the copy the
    view needs (the expand's zero strides cannot be viewed), not a layout hint: dropping it failed the
    Keras .pte ('Cannot view a tensor with shape [1, 16, 2, 16, 32] and strides (8192, 512, 0, 32, 1)')."""
    class Upsample(torch.nn.Module):
        def forward(self, x):  # NHWC, H doubled
            return (x.unsqueeze(2).expand(1, 4, 2, 4, 3).clone().view(1, 8, 4, 3) * 2.0).contiguous() + 1.0

    x = torch.randn(1, 4, 4, 3)
    gm = _keras_like_graph(Upsample(), x)
    kp.clean_layout_and_batchnorm(gm)
    assert _ops(gm)["clone"] == 1
    with torch.no_grad():
        assert torch.equal(gm(x), Upsample()(x))
    torch.export.export(gm, (x,))  # the re-export the XNNPACK passes make (it failed)


class KerasLikeConv1D(torch.nn.Module):
    """NLC in; two Conv1D + relu and a global max pool, the way Keras' torch backend exports them:
    a permute pair around each conv (WIO kernels permuted per call) and the bias added in NLC as a
    (1, 1, C) constant after the conv. The permute pair between the convs cancels, so the bias adds
    meet the NLC -> NCL permute and take it as a permuted constant: (1, C, 1)."""

    def __init__(self, c_in=4, c=8):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.k1, self.k2 = torch.randn(3, c_in, c, generator=g), torch.randn(3, c, c, generator=g)
        self.b1, self.b2 = torch.randn(c, generator=g), torch.randn(c, generator=g)

    def forward(self, x):
        y = F.conv1d(x.permute(0, 2, 1).contiguous(), self.k1.permute(2, 1, 0)).permute(0, 2, 1)
        y = F.relu(y + self.b1.reshape(1, 1, -1))
        y = F.conv1d(y.permute(0, 2, 1), self.k2.permute(2, 1, 0)).permute(0, 2, 1)
        y = F.relu(y + self.b2.reshape(1, 1, -1))
        return y.amax(dim=1)


def test_permuted_constants_are_stored_row_major_and_the_pte_runs(tmp_path):
    """A (1, 1, C) bias sunk under an NLC -> NCL permute becomes (1, C, 1). `.contiguous()` left it with
    strides (C, 1, C), which ExecuTorch reads as dim order (0, 2, 1): a Keras Embedding -> Conv1D ->
    GlobalMaxPooling1D model failed its fp32 .pte in every lowering mode (XNNPACK: 'Propagating input
    shapes failed', portable: '3 input tensors have different dim orders')."""
    from edgeship.convert.torch_pte import lower_with_fallback
    from edgeship.convert.xnnpack_passes import prepare_for_xnnpack

    x = torch.randn(1, 12, 4)
    module = KerasLikeConv1D()
    gm = _keras_like_graph(module, x)
    kp.clean_layout_and_batchnorm(gm)
    assert _ops(gm)["permute"] == 2  # NLC -> NCL in, NCL -> NLC before the pool; the pair between cancelled
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            c = kp._fetch(gm, node.target)
            assert c.stride() == torch.empty(c.shape).stride(), (node.target, tuple(c.shape), c.stride())
    with torch.no_grad():
        want = module(x)
        assert _rel(want, gm(x)) < RTOL
    program, _ = prepare_for_xnnpack(torch.export.export(gm, (x,)), [x])
    buffer, delegation = lower_with_fallback(program, [x])
    assert delegation["mode"] == "xnnpack" and not delegation["lowering_error"]
    (tmp_path / "conv1d.pte").write_bytes(buffer)
    got = _run(tmp_path / "conv1d.pte", x.numpy())[0]
    assert _rel(want, torch.from_numpy(np.asarray(got))) < RTOL


def test_a_permute_read_by_two_convs_cancels_in_both():
    """A residual block as Keras writes it: the conv's NCHW -> NHWC permute feeds two convs (the separable
    branch and the stride-2 shortcut), each behind its own NHWC -> NCHW permute. Both pairs cancel; before, a
    permute with two users kept both, and XNNPACK ran two transposes per block (fer_xception: 15 -> 3)."""

    class TwoReaders(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(3)
            self.k0, self.k1, self.k2 = (torch.randn(3, 3, 4, 4, generator=g) for _ in range(3))

        def forward(self, x):
            y = F.conv2d(x.permute(0, 3, 1, 2), self.k0.permute(3, 2, 0, 1), padding=1).permute(0, 2, 3, 1)
            a = F.conv2d(y.permute(0, 3, 1, 2), self.k1.permute(3, 2, 0, 1), padding=1).permute(0, 2, 3, 1)
            b = F.conv2d(y.permute(0, 3, 1, 2), self.k2.permute(3, 2, 0, 1), stride=2, padding=1)
            return a.permute(0, 3, 1, 2)[:, :, ::2, ::2] + b

    x = torch.randn(1, 8, 8, 4)
    module = TwoReaders().eval()
    gm = _keras_like_graph(module, x)
    with torch.no_grad():
        want = module(x)
    kp.clean_layout_and_batchnorm(gm)
    assert _ops(gm)["permute"] == 1, gm.graph  # the NHWC input's only
    with torch.no_grad():
        assert _rel(want, gm(x)) < RTOL
