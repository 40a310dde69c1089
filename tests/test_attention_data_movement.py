"""The data-movement passes (convert/xnnpack_decompose.py): a packed projection split by the parts its
readers take, a scalar product folded into the linear before it, and chains of views, transposes and
copies as at most one permute. Each on a minimal model with its pattern (graph and numbers), and together
on a stock nn.TransformerEncoderLayer, lowered and run."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from edgeship.convert import torch_pte, xnnpack_decompose, xnnpack_passes

aten = torch.ops.aten
PERMUTES = (aten.permute.default, aten.transpose.int)


def _ops(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _run_pte(program, x):
    from executorch.extension.pybindings import _C

    from edgeship.runtime.standalone.executorch import load_kernel_libraries

    edge, excluded = xnnpack_passes.lower_guarded(program, lambda p, n: torch_pte._lower(p, "xnnpack", None, n))
    load_kernel_libraries(_C)
    buffer = edge.to_executorch().buffer  # the loaded program reads it in place: keep it alive
    got = _C._load_program_from_buffer(buffer).load_method("forward").call([x])[0]
    return got, torch_pte.count_delegation(edge.exported_program()), excluded


def test_a_stock_encoder_layer_keeps_one_permute_per_head_tensor_and_eager_outputs():
    """nn.TransformerEncoderLayer (batch_first, a padding mask): its in_proj becomes three linears, q's and
    k's scale goes into their weights, and what is left of its views, transposes and copies is one permute
    each for q, k (transposed), v and the heads' output. Before: 7 permutes or transposes, 3 copies, 3
    slices and 2 scalar products per layer."""
    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x):
            return self.encoder(x, src_key_padding_mask=x[..., 0] > 1.5)

    model, x = Encoder().eval(), torch.randn(1, 6, 16)
    x[0, 4:, 0] = 2.0  # the last two tokens are padding
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert done.get("packed linear split by the parts read") == 2, done
    assert done.get("scalar product folded into its linear") == 4, done
    ops = _ops(program.module())
    assert sum(op in PERMUTES for op in ops) == 4 * 2, ops
    assert aten.clone.default not in ops and ops.count(aten.slice.Tensor) == 1, ops  # the mask's x[..., 0]
    assert sum(op == aten.linear.default for op in ops) >= 2 * 6, ops  # q, k, v, out, two feed-forward
    # the split weights that the scale fold replaced are not stored: every constant the passes made is read
    made = [n for n in program.graph.nodes if n.op == "placeholder" and "_xnnpack_" in n.name]
    assert made and not [n.name for n in made if not n.users]
    # the padding mask's kept-key count: a sum and a clamp, computed once for both layers (no max pool)
    assert ops.count(aten.clamp.default) == 1 and not {aten.amax.default, aten.max.dim} & set(ops), ops
    got, delegation, excluded = _run_pte(program, x)
    # outside: the mask's comparison and its float cast; the slice of the input they read is a partition of
    # its own (in the layers' one, it would both feed and read the comparison)
    assert delegation["partitions"] <= 2 and delegation["coverage"] > 0.95 and not excluded, delegation
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-5)


class Chunked(nn.Module):  # GPT-2's c_attn: one projection, split on the feature dim into q, k, v
    def __init__(self, also_whole: bool = False):
        super().__init__()
        self.c_attn, self.out, self.also_whole = nn.Linear(8, 24), nn.Linear(8, 4), also_whole

    def forward(self, x):
        qkv = self.c_attn(x)
        q, k, v = qkv.split(8, dim=2)
        y = self.out(torch.softmax(q @ k.transpose(1, 2), -1) @ v)
        return y + qkv.sum(-1, keepdim=True) if self.also_whole else y


def _passes_until(gm, last: str) -> dict:
    done = {}
    for what, fn in xnnpack_passes.XNNPACK_PASSES.items():
        done[what] = fn(gm)
        if what == last:
            return done
    raise AssertionError(last)


def test_a_projection_split_on_its_features_becomes_one_linear_per_part():
    torch.manual_seed(0)
    model, x = Chunked().eval(), torch.randn(1, 5, 8)
    gm = torch.export.export(model, (x,)).module()
    done = _passes_until(gm, "packed linear split by the parts read")
    assert done["packed linear split by the parts read"] == 1
    ops = _ops(gm)
    assert aten.slice.Tensor not in ops and aten.split.Tensor not in ops, ops
    assert sum(op == aten.linear.default for op in ops) == 4, ops
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_projection_also_read_whole_is_left_as_one_linear():
    """Splitting a linear whose whole output is read too would compute it twice."""
    model, x = Chunked(also_whole=True).eval(), torch.randn(1, 5, 8)
    gm = torch.export.export(model, (x,)).module()
    done = _passes_until(gm, "packed linear split by the parts read")
    assert done["packed linear split by the parts read"] == 0
    assert aten.slice.Tensor in _ops(gm)
    assert not [n for n in gm.graph.nodes if n.op == "get_attr" and "split_weight" in n.target]


class Scaled(nn.Module):
    def __init__(self, shared: bool = False):
        super().__init__()
        self.proj, self.shared = nn.Linear(8, 8), shared

    def forward(self, x):
        y = self.proj(x)
        z = y.view(1, 5, 2, 4).transpose(1, 2) * 0.5
        return z + y.view(1, 5, 2, 4).transpose(1, 2) if self.shared else z


def test_a_constant_product_after_a_linear_goes_into_its_weights():
    torch.manual_seed(0)
    model, x = Scaled().eval(), torch.randn(1, 5, 8)
    gm = torch.export.export(model, (x,)).module()
    assert xnnpack_decompose.scalar_product_into_linear(gm) == 1
    assert aten.mul.Tensor not in _ops(gm)
    assert xnnpack_decompose.scalar_product_into_linear(gm) == 0  # the scaled weights, scaled once
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_product_after_a_linear_read_elsewhere_too_stays():
    model, x = Scaled(shared=True).eval(), torch.randn(1, 5, 8)
    gm = torch.export.export(model, (x,)).module()
    assert xnnpack_decompose.scalar_product_into_linear(gm) == 0


class Chain(nn.Module):
    """A chain of views, permutes, transposes and copies between two linears, ending in 4 features."""

    def __init__(self, steps):
        super().__init__()
        self.a, self.b, self.steps = nn.Linear(4, 4), nn.Linear(4, 3), steps

    def forward(self, x):
        y = self.a(x)
        for kind, arg in self.steps:
            y = y.permute(*arg) if kind == "permute" else y.reshape(arg) if kind == "view" else y.contiguous() \
                if kind == "copy" else y.transpose(*arg)
        return self.b(y.reshape(-1, 4))


def _random_steps(rng: random.Random, shape: list[int]) -> list:
    steps = []
    for _ in range(rng.randint(2, 6)):
        kind = rng.choice(["permute", "permute", "view", "copy", "transpose"])
        if kind == "permute":
            order = list(range(len(shape)))
            rng.shuffle(order)
            shape = [shape[d] for d in order]
            arg = order
        elif kind == "transpose":
            a, b = rng.sample(range(len(shape)), 2)
            shape[a], shape[b] = shape[b], shape[a]
            arg = (a, b)
        elif kind == "view":  # merge two neighbours, or split a dim into two factors
            i = rng.randrange(len(shape))
            factors = [f for f in range(2, shape[i]) if shape[i] % f == 0]
            if factors and len(shape) < 5:
                f = rng.choice(factors)
                shape = shape[:i] + [f, shape[i] // f] + shape[i + 1:]
            elif i + 1 < len(shape):
                shape = shape[:i] + [shape[i] * shape[i + 1]] + shape[i + 2:]
            arg = list(shape)
        else:
            arg = None
        steps.append((kind, arg))
    return steps


@pytest.mark.parametrize("seed", range(12))
def test_any_chain_of_movements_becomes_at_most_one_permute_with_the_same_values(seed):
    """What a chain does is read off by running it on element indices: any composition of permutes, views
    and copies of a dense tensor is one permute of some view."""
    rng = random.Random(seed)
    start = rng.choice([[1, 6, 4], [2, 3, 4], [1, 4, 2, 4], [3, 2, 2, 4]])
    steps = _random_steps(rng, list(start))
    model, x = Chain(steps).eval(), torch.randn(*start)
    with torch.no_grad():
        want = model(x)
    gm = torch.export.export(model, (x,)).module()
    before = sum(op in PERMUTES for op in _ops(gm))
    xnnpack_decompose.movement_chains_as_one_permute(gm)
    ops = _ops(gm)
    assert sum(op in PERMUTES for op in ops) <= min(1, before), (steps, ops)
    assert aten.clone.default not in ops, ops
    with torch.no_grad():
        torch.testing.assert_close(gm(x), want)


def test_a_transpose_of_a_size_one_dim_and_its_copy_become_a_view():
    """batch_first attention's (1, S, D) -> (S, 1, D) and back: no element moves."""

    class BatchFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(self.a(x).transpose(0, 1).contiguous().view(5, 8).view(5, 1, 8).transpose(1, 0).clone())

    model, x = BatchFirst().eval(), torch.randn(1, 5, 8)
    gm = torch.export.export(model, (x,)).module()
    assert xnnpack_decompose.movement_chains_as_one_permute(gm) >= 1
    ops = _ops(gm)
    assert not set(ops) & {*PERMUTES, aten.clone.default}, ops
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


def test_one_permute_reads_back_a_permutation_and_refuses_what_no_permute_gives():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    shape_a, order = xnnpack_decompose._one_permute(x.permute(2, 0, 1).reshape(-1))
    assert x.reshape(shape_a).permute(order).reshape(-1).tolist() == x.permute(2, 0, 1).reshape(-1).tolist()
    assert (shape_a, order) == ([6, 4], [1, 0])  # the two leading dims kept together: coarsest form
    assert xnnpack_decompose._one_permute(torch.arange(6).flip(0)) is None  # a reversal is no permute
    assert xnnpack_decompose._one_permute(torch.tensor([0, 2, 1, 3, 5, 4])) is None


def test_sdpa_with_a_packed_projection_still_lowers_whole():
    """The SDPA model of test_xnnpack_decompose (qkv viewed, permuted and unbound) through every pass."""
    from test_xnnpack_decompose import Attention

    torch.manual_seed(0)
    model, x = Attention().eval(), torch.randn(1, 5, 8)
    program, done = xnnpack_passes.prepare_for_xnnpack(torch.export.export(model, (x,)), [x])
    assert done.get("packed linear split by the parts read") == 1, done
    got, delegation, _ = _run_pte(program, x)
    assert delegation["coverage"] == 1.0 and delegation["partitions"] == 1, delegation
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)


def test_what_two_layers_compute_alike_from_one_input_is_computed_once_and_a_cats_copies_stay():
    """The passes' own equal constants become one, then equal ops on equal inputs; a cat that reads one
    value twice keeps two view nodes (XNNPACK's cat needs distinct inputs)."""
    from edgeship.convert.xnnpack_decompose import _Builder

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x, m):
            k1, k2 = (1 - m).sum(-1, keepdim=True), (1 - m).sum(-1, keepdim=True)
            return self.a(x) * k1 + self.b(x) * k2

    model, x, m = Twice().eval(), torch.randn(1, 3, 4), torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    gm = torch.export.export(model, (x, m)).module()
    assert xnnpack_decompose.common_subexpressions_merged(gm) >= 2  # the second 1 - m, and its sum
    ops = _ops(gm)
    assert ops.count(aten.sub.Tensor) + ops.count(aten.rsub.Scalar) == 1 and ops.count(aten.sum.dim_IntList) == 1
    with torch.no_grad():
        torch.testing.assert_close(gm(x, m), model(x, m))
    view = next(n for n in gm.graph.nodes if n.target is aten.linear.default)
    b = _Builder(gm, next(iter(view.users)))
    copies = [b(aten.view.default, view, [1, 3, 4]) for _ in range(2)]
    b(aten.cat.default, copies, 1)
    xnnpack_decompose.common_subexpressions_merged(gm)
    assert all(c in gm.graph.nodes for c in copies)
