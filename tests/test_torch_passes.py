"""Graph passes (convert/torch_passes.py): each changes the graph as intended and no value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeship.convert import torch_passes

F = torch.nn.functional

aten = torch.ops.aten


def exported_module(module, *example):
    """The form the passes take: ExportedProgram.module(), constants as get_attr nodes."""
    return torch.export.export(module.eval(), example).module()


def targets(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def same_outputs(before, after, *example, atol=0.0):
    with torch.no_grad():
        a, b = before(*example), after(*example)
    return torch.allclose(a, b, atol=atol, rtol=0) and a.dtype == b.dtype


class ChannelsLastConv(torch.nn.Module):
    """What Keras' torch backend emits: an HWIO kernel permuted and made channels_last."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.randn(3, 3, 2, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return F.conv2d(x, self.k.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last), padding=1)


def test_strip_channels_last_hints_keeps_values():
    x = torch.rand(1, 2, 6, 6)
    gm = exported_module(ChannelsLastConv(), x)
    reference = exported_module(ChannelsLastConv(), x)
    assert [n.kwargs.get("memory_format") for n in gm.graph.nodes if n.op == "call_function"].count(
        torch.channels_last) == 1
    assert torch_passes.strip_channels_last_hints(gm) == 1
    assert not [n for n in gm.graph.nodes if "memory_format" in n.kwargs]
    assert aten.contiguous.default in targets(gm)  # the copy stays; only the layout hint goes
    assert same_outputs(reference, gm, x, atol=1e-6)  # a layout change may only reorder float sums
    assert torch_passes.strip_channels_last_hints(gm) == 0  # idempotent


def test_stripping_the_hint_is_what_makes_executorch_run_it():
    """Without the pass ExecuTorch cannot run the conv (mixed dim orders); with it, XNNPACK takes it all."""
    from edgeship.convert.torch_pte import lower_with_fallback
    from edgeship.errors import ConversionError

    x = torch.rand(1, 2, 6, 6)
    with pytest.raises(ConversionError, match="dim order"):
        lower_with_fallback(torch.export.export(ChannelsLastConv().eval(), (x,)), [x])
    gm = exported_module(ChannelsLastConv(), x)
    torch_passes.strip_channels_last_hints(gm)
    _, delegation = lower_with_fallback(torch.export.export(gm, (x,)), [x])
    # XNNPACK's own mode lowered it (no fallback mode); `fallback` now names the ops left out, if any
    assert delegation["mode"] == "xnnpack" and delegation["lowering_error"] is None, delegation
    assert delegation["delegated_ops"] >= 1
    # folding the weight's permute/copy as well leaves XNNPACK the whole graph
    torch_passes.fold_constant_layout_ops(gm)
    _, delegation = lower_with_fallback(torch.export.export(gm, (x,)), [x])
    assert delegation["coverage"] == 1.0


def test_remove_identity_conversions():
    class Casts(torch.nn.Module):
        def forward(self, x):
            y = x.to(torch.float32).float() * 2  # two conversions that convert nothing
            return y.to(torch.float64).sum().to(torch.float32)  # two real ones

    x = torch.rand(3, 4)
    gm = exported_module(Casts(), x)
    n_before = len(targets(gm))
    removed = torch_passes.remove_identity_conversions(gm)
    assert removed >= 2 and len(targets(gm)) == n_before - removed
    real = [n for n in gm.graph.nodes if n.op == "call_function" and "to" in str(n.target)]
    assert len(real) == 2
    assert same_outputs(Casts(), gm, x)


def test_remove_identity_conversions_drops_metadata_asserts():
    x = torch.rand(2, 3)
    gm = exported_module(torch.nn.ReLU(), x)
    node = next(n for n in gm.graph.nodes if n.op == "placeholder")
    with gm.graph.inserting_after(node):
        gm.graph.call_function(aten._assert_tensor_metadata.default, (node,), {"dtype": torch.float32})
    gm.recompile()
    assert torch_passes.remove_identity_conversions(gm) == 1
    assert aten._assert_tensor_metadata.default not in targets(gm)


class PermutedConstants(torch.nn.Module):
    """Kernels held as plain tensors (as Keras' torch backend exports them), permuted per call."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.kernel = torch.randn(3, 3, 2, 4, generator=g)  # HWIO
        self.bias = torch.randn(4, generator=g)

    def forward(self, x):
        y = F.conv2d(x, self.kernel.permute(3, 2, 0, 1).contiguous(), padding=1)
        return y + self.bias.reshape(1, 4, 1, 1)


def test_fold_constant_layout_ops():
    x = torch.rand(1, 2, 5, 5)
    gm = exported_module(PermutedConstants(), x)
    reference = exported_module(PermutedConstants(), x)
    folded = torch_passes.fold_constant_layout_ops(gm)
    assert folded == 3  # permute, contiguous, reshape
    assert targets(gm) == [aten.conv2d.default, aten.add.Tensor]
    conv = next(n for n in gm.graph.nodes if n.target == aten.conv2d.default)
    weight = getattr(gm, conv.args[1].target)
    assert conv.args[1].op == "get_attr" and tuple(weight.shape) == (4, 2, 3, 3)  # OIHW, ready for XNNPACK
    assert same_outputs(reference, gm, x)
    # the HWIO originals are gone, not stored twice
    assert not any(tuple(t.shape) == (3, 3, 2, 4) for t in gm.buffers())
    assert torch.export.export(gm, (x,)) is not None  # still exports


def test_fold_leaves_activations_alone():
    class Act(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 1).reshape(1, -1)

    gm = exported_module(Act(), torch.rand(1, 3, 4))
    assert torch_passes.fold_constant_layout_ops(gm) == 0


class Dense(torch.nn.Module):
    """A Keras Dense layer as its torch backend exports it: matmul with an (in, out) kernel, then add."""

    def __init__(self, bias=True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.kernel = torch.randn(6, 3, generator=g)
        self.bias = torch.randn(3, generator=g) if bias else None

    def forward(self, x):
        y = torch.matmul(x, self.kernel)
        return y + self.bias if self.bias is not None else y


@pytest.mark.parametrize("bias", [True, False])
def test_matmul_add_to_linear(bias):
    x = torch.rand(2, 6)
    gm = exported_module(Dense(bias), x)
    assert torch_passes.matmul_add_to_linear(gm) == 1
    assert targets(gm) == [aten.linear.default]
    linear = next(n for n in gm.graph.nodes if n.target == aten.linear.default)
    assert tuple(getattr(gm, linear.args[1].target).shape) == (3, 6)  # (out, in), as linear wants
    assert (linear.args[2] is not None) == bias
    assert same_outputs(Dense(bias), gm, x, atol=1e-6)


def test_matmul_of_two_activations_is_left_alone():
    class Gram(torch.nn.Module):
        def forward(self, x):
            return x @ x.t()

    gm = exported_module(Gram(), torch.rand(3, 4))
    assert torch_passes.matmul_add_to_linear(gm) == 0


def test_linear_makes_keras_dense_quantizable():
    """XNNPACKQuantizer's dynamic int8 covers linear, not matmul: only after the pass does the
    Dense kernel become an int8 weight."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    def int8_weight_shapes(gm):
        config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
        prepared = prepare_pt2e(gm, XNNPACKQuantizer().set_global(config))
        prepared(x)
        return [tuple(t.shape) for t in convert_pt2e(prepared).buffers() if t.dtype == torch.int8]

    x = torch.rand(1, 6)
    assert int8_weight_shapes(exported_module(Dense(), x)) == []
    gm = exported_module(Dense(), x)
    torch_passes.matmul_add_to_linear(gm)
    assert int8_weight_shapes(torch.export.export(gm, (x,)).module()) == [(3, 6)]


def test_convert_to_half():
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    torch.manual_seed(0)
    module.eval()
    x = torch.rand(1, 1, 4, 4)
    gm = exported_module(module, x)
    assert torch_passes.convert_to_half(gm) > 0
    assert all(p.dtype == torch.float16 for p in gm.parameters())
    with torch.no_grad():
        out = gm(x)  # float32 in, float32 out, float16 inside
    assert out.dtype == torch.float32 and torch.allclose(out, module(x), atol=1e-2)
    program = torch.export.export(gm, (x,))
    dtypes = {n.meta["val"].dtype for n in program.graph.nodes if n.op == "call_function" and "val" in n.meta}
    assert torch.float16 in dtypes


def test_convert_to_half_rewrites_explicit_float32():
    class ExplicitCast(torch.nn.Module):
        def forward(self, x):
            return (x * 3).to(torch.float32) + torch.ones(2, dtype=torch.float32)

    x = torch.rand(2)
    gm = exported_module(ExplicitCast(), x)
    torch_passes.convert_to_half(gm)
    inner = [n for n in gm.graph.nodes if n.op == "call_function"][1:-1]  # between the boundary casts
    assert all(torch.float32 not in (*n.args, *n.kwargs.values()) for n in inner)
    assert np.allclose(gm(x).numpy(), ExplicitCast()(x).numpy(), atol=1e-2)
