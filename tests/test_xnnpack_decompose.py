"""Each XNNPACK graph pass (convert/xnnpack_decompose.py) on a minimal model with its pattern: the
pattern leaves the graph, the outputs stay those of eager PyTorch, and more of the graph goes into
XNNPACK than before the pass. The models are built for the pattern (seeded weights: the passes
are exact rewrites, so any weights show a wrong one)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeship.convert import torch_pte, xnnpack_decompose, xnnpack_passes

aten = torch.ops.aten


class LayerNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


class Attention(nn.Module):  # SDPA without a mask: _safe_softmax, batched matmul, the scale as mul.Scalar
    def __init__(self):
        super().__init__()
        self.qkv, self.out = nn.Linear(8, 24), nn.Linear(8, 8)

    def forward(self, x):
        q, k, v = self.qkv(x).view(1, 5, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 5, 8))


class ClsToken(nn.Module):  # expand of a learned token, select of it at the end
    def __init__(self):
        super().__init__()
        self.cls, self.proj, self.head = nn.Parameter(torch.randn(1, 1, 8)), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.proj(x)], 1)
        return self.head(torch.relu(x)[:, 0])


class Squeezed(nn.Module):  # unsqueeze / squeeze around a linear
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        y = self.a(x).unsqueeze(1) * 0.125 + 1.0
        return self.b(torch.relu(y).squeeze(1))


class MaxOverTime(nn.Module):  # the text CNN's torch.max(x, dim) without keepdim, and amax on 3-D
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv1d(4, 8, 3, padding=1), nn.Linear(16, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.head(torch.cat([torch.max(y, 2)[0], torch.amax(y, dim=2)], 1))


class NhwcMean(nn.Module):  # squeeze-excite as Keras writes it: NHWC, mean over (1, 2); a last-dim mean
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 8)

    def forward(self, x):
        y = torch.relu(self.conv(x)).permute(0, 2, 3, 1)
        se = torch.sigmoid(self.fc(y.mean(dim=(1, 2))))
        return (y * se[:, None, None, :]).mean(-1)


class MaskedRecurrence(nn.Module):
    """A recurrent layer with a padding mask, as Keras' GRU/LSTM (torch backend) writes it: a zero
    state, per step the mask column `tile(m_t, [1, 1])` (bool) and `where(m_t, new state, old state)`."""

    def __init__(self):
        super().__init__()
        self.inp, self.rec, self.head = nn.Linear(4, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 3)

    def forward(self, x):
        mask = (x[..., 0] > -0.5).unsqueeze(-1).permute(1, 0, 2)  # (T, 1, 1): which steps are real
        h = torch.zeros(1, 8)
        for t, m in enumerate(mask.unbind(0)):
            new = torch.tanh(self.inp(x[:, t]) + self.rec(h))
            h = torch.where(torch.tile(m, [1, 1]), new, h)
        return self.head(h)


class PositionsAndCausalMask(nn.Module):
    """What transformers' models build from shapes alone: position ids from arange and their embedding,
    a causal mask from two aranges and a comparison, as an additive float bias."""

    def __init__(self):
        super().__init__()
        self.pos, self.proj = nn.Embedding(16, 8), nn.Linear(8, 8)

    def forward(self, x):
        t = x.shape[1]
        h = self.proj(x + self.pos(torch.arange(t)))
        blocked = (torch.arange(t)[None, :] > torch.arange(t)[:, None]).float() * -1e4
        return torch.softmax(h @ h.transpose(-1, -2) / 8 + blocked, -1) @ h


class GroupNormConv(nn.Module):  # wav2vec2's first conv: GroupNorm with a group per channel; and 4 groups
    def __init__(self):
        super().__init__()
        self.conv, self.norm, self.norm4 = nn.Conv1d(1, 8, 5, stride=2), nn.GroupNorm(8, 8), nn.GroupNorm(4, 8)

    def forward(self, x):
        return self.norm4(F.gelu(self.norm(self.conv(x))))


class TanhGelu(nn.Module):  # GPT-2's gelu_new: x ** 3 inside
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.b(h) + torch.pow(torch.relu(h), 0.5).sum(-1, keepdim=True)


class EmptyCache(nn.Module):  # a key/value cache that starts empty, as GPT-2 concatenates it; an alias
    def __init__(self):
        super().__init__()
        self.k, self.out = nn.Linear(8, 8), nn.Linear(8, 4)
        self.register_buffer("past", torch.zeros(0), persistent=False)

    def forward(self, x):
        k = torch.cat([self.past, self.k(x)], dim=-2)
        return self.out(aten.alias(torch.relu(k)))


class NearestUpsample(nn.Module):  # repeat_interleave over H and W of an NHWC tensor, as Keras' UpSampling2D
    def __init__(self):
        super().__init__()
        self.conv, self.out = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        z = torch.relu(self.conv(x)).unsqueeze(2).expand(1, 4, 2, 6, 6).reshape(1, 8, 6, 6)  # expand, then a copy
        return self.out(y.permute(0, 3, 1, 2)) + z[:, 2:4].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class Normalized(nn.Module):  # F.normalize: linalg_vector_norm, clamp_min, expand_as, div; an L1 norm beside
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = F.normalize(self.a(x), dim=-1)
        return self.b(h) + torch.linalg.vector_norm(h, 1, dim=-1, keepdim=True)


class InstanceNormed(nn.Module):  # InstanceNorm2d with and without affine (a generator's blocks)
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b, self.plain = nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True), \
            nn.Conv2d(8, 4, 3, padding=1), nn.InstanceNorm2d(4)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 2.0)
            self.norm.bias.uniform_(-1.0, 1.0)

    def forward(self, x):
        return self.plain(self.b(torch.relu(self.norm(self.a(x)))))


class Rolled(nn.Module):  # shifted windows: roll over two dims, a negative shift, and a flat roll
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.roll(torch.relu(self.a(x)), shifts=(2, -3), dims=(2, 3))
        return torch.roll(self.b(y), 5) + torch.roll(self.b(y), shifts=8, dims=1)


class Activations(nn.Module):  # every activation the pass rewrites, and softsign's Python-int `1 + |x|`
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(80, 4)

    def forward(self, x):
        y = self.a(x) * 4.0
        outs = [F.hardsigmoid(y), F.elu(y), F.selu(y), F.celu(y, 0.5), F.softplus(y, beta=2.0), F.mish(y),
                F.logsigmoid(y), F.softsign(y), F.log_softmax(y, -1), F.elu(y, alpha=0.3)]
        return self.b(torch.cat(outs, -1))


class Pools1d(nn.Module):  # an audio/text CNN's pools over time: avg, max with padding, adaptive avg and max
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv1d(3, 8, 3, padding=1), nn.Linear(8 * (8 + 8 + 4 + 1), 4)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        parts = [F.avg_pool1d(y, 2), F.max_pool1d(y, 3, 2, padding=1), F.adaptive_avg_pool1d(y, 4),
                 F.adaptive_max_pool1d(y, 1)]
        return self.head(torch.cat([p.flatten(1) for p in parts], 1))


class Pools2d(nn.Module):  # adaptive pools to 2x2 and 1x1 (max), an average pool counting its padding
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * (4 + 1 + 16), 4)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        parts = [F.adaptive_avg_pool2d(y, 2), F.adaptive_max_pool2d(y, 1), F.avg_pool2d(y, 3, 2, padding=1)]
        return self.head(torch.cat([p.flatten(1) for p in parts], 1))


class Head(nn.Module):
    """conv -> relu -> `fn` -> a linear over its flattened output: the pattern `fn` between ops XNNPACK takes."""

    def __init__(self, fn, features: int):
        super().__init__()
        self.fn, self.conv, self.head = fn, nn.Conv2d(3, 8, 3, padding=1), nn.Linear(features, 4)

    def forward(self, x):
        return self.head(self.fn(torch.relu(self.conv(x))).flatten(1))


def _head(fn, features):
    return type(f"Head_{fn.__name__}", (Head,), {"__init__": lambda self: Head.__init__(self, fn, features)})


def _nearest(y):  # an FPN neck: nearest x2 and a 1-d nearest x3
    return torch.cat([F.interpolate(y, scale_factor=2).flatten(2), F.interpolate(y.flatten(2), scale_factor=3)], 2)


def _rms(y):  # RMSNorm over the last dim, and over the last two
    return F.rms_norm(y, (6,), torch.linspace(0.5, 1.5, 6), 1e-6) + F.rms_norm(y, (6, 6))


def _norms(y):  # a LayerNorm over (C, H, W), var and std over space
    return F.layer_norm(y, (8, 6, 6)) + torch.var(y, (2, 3), keepdim=True) * y.std(1, keepdim=True)


def _channel_softmax(y):  # softmax over channels, as a spatial attention map writes it
    return torch.softmax(y, 1) * y


def _focus(y):  # YOLOv5's Focus: four stride-2 slices; a step of 4 from 1 over 6, padded to whole steps
    focus = torch.cat([y[..., ::2, ::2], y[..., 1::2, ::2], y[..., ::2, 1::2], y[..., 1::2, 1::2]], 1)
    return torch.cat([focus.flatten(1), y[..., 1::4].flatten(1)], 1)


def _tiled(y):
    return torch.cat([y.repeat(1, 2, 1, 1), torch.tile(y, (1, 1, 1, 2))[..., :6]], 1)


def _padded(y):  # reflection (HiFi-GAN, style transfer) and replication padding
    return F.pad(y, (1, 2, 2, 1), mode="reflect") + F.pad(y, (1, 2, 2, 1), mode="replicate")


def _global_max_min(y):  # CBAM's global max over (H, W); a min over channels
    return torch.cat([y.amax(dim=(2, 3)), y.amin(1).flatten(1)], 1)


class GridDecode(nn.Module):  # a detector head's decode: a meshgrid of constant aranges added to the offsets
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        p = self.conv(x).permute(0, 2, 3, 1)
        yv, xv = torch.meshgrid(torch.arange(6, dtype=torch.float32), torch.arange(6, dtype=torch.float32), indexing="ij")
        return (p.sigmoid() + torch.stack((xv, yv), -1)) * 8.0


CASES = {  # model, input, pass, ops it removes
    "layer_norm": (LayerNormNet, (1, 5, 8), xnnpack_decompose.layer_norm_decompose,
                   {aten.layer_norm.default, aten.native_layer_norm.default}),
    "safe_softmax": (Attention, (1, 5, 8), xnnpack_decompose.safe_softmax_to_softmax, {aten._safe_softmax.default}),
    "matmul": (Attention, (1, 5, 8), xnnpack_decompose.batched_matmul_to_bmm, {aten.matmul.default}),
    "scalar_in_attention": (Attention, (1, 5, 8), xnnpack_decompose.scalar_ops_to_tensor, {aten.mul.Scalar}),
    "expand": (ClsToken, (1, 4, 8), xnnpack_decompose.expand_to_view, {aten.expand.default}),
    "select": (ClsToken, (1, 4, 8), xnnpack_decompose.select_to_slice, {aten.select.int}),
    "unbind": (Attention, (1, 5, 8), xnnpack_decompose.select_to_slice, {aten.unbind.int}),
    "squeeze": (Squeezed, (1, 8), xnnpack_decompose.squeeze_to_view,
                {aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default}),
    "max": (MaxOverTime, (1, 4, 6), xnnpack_decompose.max_to_4d_keepdim, {aten.amax.default}),
    "mean": (NhwcMean, (1, 3, 5, 5), xnnpack_decompose.mean_for_xnnpack, set()),
    "repeat": (MaskedRecurrence, (1, 6, 4), xnnpack_decompose.repeat_as_expand, {aten.tile.default}),
    "where": (MaskedRecurrence, (1, 6, 4), xnnpack_decompose.where_as_blend, {aten.where.self}),
    "fills": (MaskedRecurrence, (1, 6, 4), xnnpack_decompose.fills_as_constants, {aten.zeros.default}),
    "group_norm": (GroupNormConv, (1, 1, 40), xnnpack_decompose.group_norm_decompose,
                   {aten.group_norm.default, aten.native_group_norm.default}),
    "instance_norm": (InstanceNormed, (2, 3, 6, 6), xnnpack_decompose.instance_norm_decompose,
                      {aten.instance_norm.default}),
    "activations": (Activations, (1, 5, 8), xnnpack_decompose.activations_as_xnnpack_ops,
                    {aten.hardsigmoid.default, aten.elu.default, aten.selu.default, aten.celu.default,
                     aten.softplus.default, aten.mish.default, aten.log_sigmoid.default, aten.log_softmax.int}),
    "pools_1d": (Pools1d, (1, 3, 16), xnnpack_decompose.pooling_as_2d_pools,
                 {aten.avg_pool1d.default, aten.max_pool1d.default, aten.adaptive_avg_pool1d.default,
                  aten.adaptive_max_pool1d.default}),
    "pools_2d": (Pools2d, (1, 3, 8, 8), xnnpack_decompose.pooling_as_2d_pools,
                 {aten.adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default}),
    "nearest": (_head(_nearest, 8 * 144 + 8 * 108), (1, 3, 6, 6), xnnpack_decompose.nearest_upsample_as_repeats,
                {aten.upsample_nearest2d.vec, aten.upsample_nearest1d.vec}),
    "rms_norm": (_head(_rms, 288), (1, 3, 6, 6), xnnpack_decompose.rms_norm_decompose, {aten.rms_norm.default}),
    "layer_norm_dims": (_head(_norms, 288), (1, 3, 6, 6), xnnpack_decompose.layer_norm_decompose,
                        {aten.layer_norm.default}),
    "variance": (_head(_norms, 288), (1, 3, 6, 6), xnnpack_decompose.variance_as_means,
                 {aten.var.dim, aten.var.correction, aten.std.dim, aten.std.correction}),
    "softmax_dim": (_head(_channel_softmax, 288), (1, 3, 6, 6), xnnpack_decompose.softmax_on_last_dim,
                    {aten.softmax.int}),
    "strided_slice": (_head(_focus, 32 * 9 + 8 * 12), (1, 3, 6, 6), xnnpack_decompose.strided_slice_as_view, set()),
    "repeat_copies": (_head(_tiled, 24 * 36), (1, 3, 6, 6), xnnpack_decompose.repeat_as_cat,
                      {aten.repeat.default, aten.tile.default}),
    "reflect_pad": (_head(_padded, 8 * 81), (1, 3, 6, 6), xnnpack_decompose.reflect_pad_as_cat, {aten.pad.default}),
    "max_min": (_head(_global_max_min, 8 + 36), (1, 3, 6, 6), xnnpack_decompose.reductions_over_one_dim,
                {aten.amin.default}),
    "fold_meshgrid": (GridDecode, (1, 3, 6, 6), xnnpack_decompose.fold_constants,
                      {aten.meshgrid.indexing, aten.arange.default, aten.arange.start}),
    "roll": (Rolled, (1, 3, 6, 7), xnnpack_decompose.roll_as_slices, {aten.roll.default}),
    "pow": (TanhGelu, (1, 5, 8), xnnpack_decompose.pow_as_muls, {aten.pow.Tensor_Scalar}),
    "empty_cat": (EmptyCache, (1, 5, 8), xnnpack_decompose.empty_cat_and_alias_dropped,
                  {aten.cat.default, aten.alias.default}),
    "repeat_interleave": (NearestUpsample, (1, 4, 6, 6), xnnpack_decompose.materialized_expand_as_cat,
                          {aten.repeat_interleave.self_int, aten.expand.default}),
    "vector_norm": (Normalized, (1, 5, 8), xnnpack_decompose.vector_norm_as_sums, {aten.linalg_vector_norm.default}),
    "expand_as": (Normalized, (1, 5, 8), xnnpack_decompose.expand_into_broadcast, {aten.expand_as.default}),
    "fold": (PositionsAndCausalMask, (1, 6, 8), xnnpack_decompose.fold_constants,
             {aten.arange.default, aten.arange.start, aten.embedding.default, aten.gt.Tensor}),
}


def _ops(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


_BEFORE: dict[str, float] = {}  # a model's coverage before any pass, shared by its cases


def _coverage(program, x) -> float:
    """Share of edge ops inside XNNPACK partitions (0 where lowering fails outright)."""
    try:
        edge, _ = xnnpack_passes.lower_guarded(program, lambda p, names: torch_pte._lower(p, "xnnpack", None, names))
    except Exception:
        return 0.0
    return torch_pte.count_delegation(edge.exported_program())["coverage"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_pass_rewrites_its_pattern_keeps_values_and_delegates_more(case):
    factory, shape, fn, removed = CASES[case]
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(*shape)
    program = torch.export.export(model, (x,))
    program, _ = xnnpack_decompose.decompose_fused(program)
    gm = program.module()
    before = _ops(gm)
    assert set(before) & removed or not removed, before
    assert fn(gm) >= 1
    after = _ops(gm)
    assert not removed & set(after), after
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)
    rewritten = torch.export.export(gm, (x,))
    if factory.__name__ not in _BEFORE:
        _BEFORE[factory.__name__] = _coverage(program, x)
    assert _coverage(rewritten, x) > _BEFORE[factory.__name__]


def test_all_passes_delegate_attention_whole_with_eager_outputs():
    """The passes together (prepare_for_xnnpack) on SDPA: one partition, every op in it."""
    torch.manual_seed(0)
    model, x = Attention().eval(), torch.randn(1, 5, 8)
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert {"attention decomposed", "safe softmax as softmax", "batched matmul as bmm"} <= set(done), done
    edge, excluded = xnnpack_passes.lower_guarded(program, lambda p, n: torch_pte._lower(p, "xnnpack", None, n))
    d = torch_pte.count_delegation(edge.exported_program())
    assert d["coverage"] == 1.0 and d["partitions"] == 1 and not excluded, d
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    load_kernel_libraries(_C)
    buffer = edge.to_executorch().buffer  # the loaded program reads it in place: keep it alive
    got = _C._load_program_from_buffer(buffer).load_method("forward").call([x])[0]
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)


def test_safe_softmax_stays_where_a_mask_can_reach_it():
    """A masked row of -inf is where _safe_softmax (zeros) and _softmax (NaN) differ: left alone."""

    class Masked(nn.Module):
        def forward(self, x):
            return aten._safe_softmax(x.masked_fill(x < -1, float("-inf")), -1)

    gm = torch.export.export(Masked(), (torch.randn(2, 4),)).module()
    assert xnnpack_decompose.safe_softmax_to_softmax(gm) == 0
    assert aten._safe_softmax.default in _ops(gm)


def test_masked_recurrence_delegates_whole_with_one_mask_cast_and_eager_outputs():
    """All passes on a masked recurrent layer: the where/tile/bool steps become arithmetic on one
    float cast of the mask; everything but that cast and the comparison goes into XNNPACK, and the
    lowered program gives eager's outputs with some steps masked and some not."""
    torch.manual_seed(0)
    model, x = MaskedRecurrence().eval(), torch.randn(1, 6, 4)
    x[0, 4:, 0] = -1.0  # two padded steps at the end, as after a zero-padded sequence
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert done.get("where as blend") == 6 and done.get("repeat as expand") == 6, done
    ops = _ops(program.module())
    assert aten.where.self not in ops and aten.tile.default not in ops and aten.zeros.default not in ops, ops
    assert sum(op == aten._to_copy.default for op in ops) == 1, ops
    edge, _ = xnnpack_passes.lower_guarded(program, lambda p, n: torch_pte._lower(p, "xnnpack", None, n))
    d = torch_pte.count_delegation(edge.exported_program())
    assert d["coverage"] >= 0.95, d
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    load_kernel_libraries(_C)
    buffer = edge.to_executorch().buffer
    method = _C._load_program_from_buffer(buffer).load_method("forward")
    for sample in (x, torch.randn(1, 6, 4)):
        with torch.no_grad():
            torch.testing.assert_close(method.call([sample])[0], model(sample), rtol=1e-5, atol=1e-5)


def test_attention_over_a_batch_of_windows_is_rewritten_with_copies_where_a_view_cannot_be():
    """Attention on several sequences at once (Swin's windows, MobileViT's patches): q, k, v permuted out
    of one projection cannot be viewed as 3-D for bmm. Red before: the matmul pass built that view and
    raised "Cannot view a tensor with shape ... as a tensor with shape ..."; now it is a reshape, and the
    lowered program gives eager's outputs."""

    class WindowAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = nn.Linear(8, 24), nn.Linear(8, 8)

        def forward(self, x):  # x: (windows, tokens, channels)
            q, k, v = self.qkv(x).view(4, 5, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
            return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(4, 5, 8))

    torch.manual_seed(0)
    model, x = WindowAttention().eval(), torch.randn(4, 5, 8)
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert done.get("batched matmul as bmm") == 2, done
    assert aten.matmul.default not in _ops(program.module())
    edge, _ = xnnpack_passes.lower_guarded(program, lambda p, n: torch_pte._lower(p, "xnnpack", None, n))
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    load_kernel_libraries(_C)
    buffer = edge.to_executorch().buffer
    got = _C._load_program_from_buffer(buffer).load_method("forward").call([x])[0]
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)


def test_folding_leaves_an_int8_graphs_dequantized_weights_alone():
    """After PT2E, an int8 weight is a constant behind a dequantize, which XNNPACK's int8 linear needs to
    see; folding it would hand XNNPACK a float weight. The int8 graph's dequantize nodes all stay."""
    from edgeship.convert.torch_pte import pt2e_quantize
    from edgeship.data import Dataset
    from edgeship.model import TensorSpec

    torch.manual_seed(0)
    model, x = LayerNormNet().eval(), torch.randn(1, 5, 8)
    rows = torch.randn(8, 5, 8).numpy()
    gm = pt2e_quantize(torch.export.export(model, (x,)), [x], Dataset("noise", [rows], [TensorSpec("x", rows.shape, "float32")]))
    dequantize = [t for t in _ops(gm) if "dequantize" in str(t)]
    assert dequantize
    xnnpack_decompose.fold_constants(gm)
    assert [t for t in _ops(gm) if "dequantize" in str(t)] == dequantize


def test_where_stays_where_a_value_may_be_infinite():
    """where(m, x, -inf) (an attention mask) is not a blend: inf * 0 is NaN. Left for masked_softmax."""

    class MaskFill(nn.Module):
        def forward(self, x):
            return torch.softmax(torch.where(x > 0, x, torch.full_like(x, float("-inf"))), -1)

    gm = torch.export.export(MaskFill(), (torch.randn(2, 4),)).module()
    assert xnnpack_decompose.where_as_blend(gm) == 0
    assert aten.where.self in _ops(gm)


def test_repeat_that_copies_data_stays():
    """tile/repeat along a dim of size > 1 is a real copy, not a broadcast: left alone."""

    class Tiled(nn.Module):
        def forward(self, x):
            return torch.tile(x, [1, 2]) * 2.0

    gm = torch.export.export(Tiled(), (torch.randn(2, 3),)).module()
    assert xnnpack_decompose.repeat_as_expand(gm) == 0


def test_conv1d_chain_stays_4d_with_fewer_layout_transposes(tmp_path):
    """conv1d as conv2d plus sunk views: the same delegation, fewer XNNPACK transposes, eager outputs."""
    from edgeship.runtime.standalone.executorch import inspect_artifact

    class Conv1dChain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv1d(4, 8, 3, padding=1), nn.Conv1d(8, 8, 3, dilation=2, padding=2)

        def forward(self, x):
            return torch.relu(self.b(torch.relu(self.a(x))))

    torch.manual_seed(0)
    model, x = Conv1dChain().eval(), torch.randn(1, 4, 12)
    stock = torch.export.export(model, (x,))
    program, done = xnnpack_passes.prepare_for_xnnpack(stock, [x])
    assert done.get("conv1d as conv2d") == 2 and done.get("views sunk and merged"), done
    transposes = []
    for p in (stock, program):
        buffer, d = torch_pte.lower_with_fallback(p, [x])
        assert d["coverage"] == 1.0, d
        path = tmp_path / f"{len(transposes)}.pte"
        path.write_bytes(buffer)
        ops = {o["op"]: o["count"] for o in inspect_artifact(str(path))["ops"]}
        transposes.append(ops.get("XNNStaticTranspose", 0))
    assert transposes[1] < transposes[0], transposes
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_permuted_constant_is_stored_row_major_and_the_pte_runs(tmp_path):
    """A buffer permuted where only size-1 dims move ((1, 1, 8) -> (1, 8, 1), strides (8, 1, 8)) is
    contiguous to torch, but ExecuTorch reads its dim order from the strides: (0, 2, 1). Every lowering
    mode failed at its trial run (XNNPACK: 'Propagating input shapes failed'; portable kernels: 'input
    tensors have different dim orders'); stored row-major, it delegates whole with eager outputs."""
    from edgeship.runtime.standalone.executorch import Runner

    class PermutedBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 8, 3, bias=False)
            self.register_buffer("bias", torch.randn(1, 1, 8).permute(0, 2, 1))  # as a Keras NLC bias lands

        def forward(self, x):
            return torch.relu(self.conv(x) + self.bias)

    torch.manual_seed(0)
    model, x = PermutedBias().eval(), torch.randn(1, 4, 12)
    assert model.bias.stride() == (8, 1, 8)
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert done.get("constants stored row-major") == 1, done
    buffer, d = torch_pte.lower_with_fallback(program, [x])
    assert d["mode"] == "xnnpack" and not d["lowering_error"] and d["coverage"] == 1.0, d
    (tmp_path / "m.pte").write_bytes(buffer)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(Runner(tmp_path / "m.pte").run([x.numpy()])[0]), model(x),
                                   rtol=1e-5, atol=1e-5)


def test_activations_and_python_int_operands_delegate_whole():
    """All the passes (prepare_for_xnnpack) on the activations model: one partition, no op left to the
    portable kernels (each activation had split the graph, and softsign's `1 + |x|` left an int64 cast)."""
    torch.manual_seed(0)
    model, x = Activations().eval(), torch.randn(1, 5, 8)
    program, _ = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)
    edge, _ = xnnpack_passes.lower_guarded(program, lambda p, names: torch_pte._lower(p, "xnnpack", None, names))
    counts = torch_pte.count_delegation(edge.exported_program())
    assert counts["partitions"] == 1 and counts["coverage"] == 1.0, counts


class CausalText(nn.Module):  # what Keras' torch backend writes: ids wrapped by where(ids < 0, ...), a causal mask
    def __init__(self):
        super().__init__()
        self.tok, self.qkv, self.head = nn.Embedding(50, 8), nn.Linear(8, 24), nn.Linear(8, 3)

    def forward(self, ids):
        ids = torch.where(ids < 0, ids + 50, ids)
        q, k, v = self.qkv(self.tok(ids)).view(1, 6, 3, 8).permute(2, 0, 1, 3).unbind(0)
        causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))
        return self.head(F.scaled_dot_product_attention(q, k, v, attn_mask=causal).mean(1))


def test_an_integer_where_before_the_scores_leaves_the_masked_softmax_rewrite_free():
    """The -inf search stopped at nothing: the integer `where` of an embedding's index fix-up counted as a
    masking op that could put -inf in the scores, so the causal softmax stayed a safe softmax and its masking
    (eq, logical_not, any, full_like, where) went to the portable kernels. Integer values end the search now:
    only the integer index ops stay out of XNNPACK."""
    import operator

    torch.manual_seed(0)
    model, ids = CausalText().eval(), torch.tensor([[3, 7, 1, 0, 12, 49]])
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (ids,)), [ids])
    assert "masked safe softmax as softmax with a finite bias" in done, done
    with torch.no_grad():
        torch.testing.assert_close(program.module()(ids), model(ids), rtol=1e-5, atol=1e-5)
    edge, _ = xnnpack_passes.lower_guarded(program, lambda p, names: torch_pte._lower(p, "xnnpack", None, names))
    left = [str(n.target).split("(")[0] for n in edge.exported_program().graph_module.graph.nodes
            if n.op == "call_function" and n.target is not operator.getitem and "call_delegate" not in str(n.target)]
    assert not [op for op in left if any(m in op for m in ("eq.", "logical_not", "any.", "full_like"))], left
