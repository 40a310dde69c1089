"""XNNPACK's PT2E quantizer, taught the conv + ReLU6 pattern (issue 11, Keras -> .pte speed).

XNNPACKQuantizer fuses only ReLU into a conv ("conv_relu"): for conv -> ReLU6 (Keras' relu6,
torch's nn.ReLU6 = hardtanh(0, 6)) it quantizes the conv's output, then the clamp on its own, so
the int8 .pte runs every ReLU6 as a separate XNNClamp between two quantized tensors (35 of them in
a Keras MobileNetV2: 121 XNNPACK ops, 84 with this quantizer).

A zero pad before a conv (Keras' ZeroPadding2D / correct_pad before a stride-2 conv), observed after
the pad as XNNPACKQuantizer does, ran in float between two XNNConvert (ExecuTorch's InsertPadQDQPass
only quantizes a pad whose user is not a quantize). `pads_quantized_with_their_conv` observes it
before the pad instead. An earlier fix grew the conv's kernel to take the padding in, which made a
stride-2 3x3 depthwise conv a 4x4 one: a Keras MobileNetV2's int8 .pte ran at 2.19 ms with it,
1.73 ms with the pads quantized (the .tflite: 1.64).

`ClampFusingQuantizer` annotates conv -> hardtanh as one quantized pattern (the conv's output is
observed after the clamp), the way "conv_relu" does, after rewriting relu6(x) as the equal
hardtanh(x, 0, 6). XNNPACK's partitioner takes hardtanh as a fused activation of a quantized
conv (its gemm configs' fused_acts), and its FuseActivationPass folds it into the conv's output
range, so the clamp costs nothing. Everything else is XNNPACKQuantizer's own annotation.
"""

from __future__ import annotations


def relu6_to_hardtanh(gm) -> int:
    """relu6(x) -> hardtanh(x, 0.0, 6.0), the same function. Returns the number rewritten."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.relu6.default, aten.relu6_.default):
            continue
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(aten.hardtanh.default, (node.args[0], 0.0, 6.0))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        changed += 1
    if changed:
        gm.graph.lint()
        gm.recompile()
    return changed


def _is_conv(node) -> bool:
    import torch

    aten = torch.ops.aten
    return node.op == "call_function" and node.target in (aten.conv1d.default, aten.conv2d.default)


def _is_clamp(node) -> bool:
    """hardtanh(x, lo, hi) with lo < hi: a clamp XNNPACK can fuse into a conv's output range."""
    import torch

    if node.op != "call_function" or node.target not in (torch.ops.aten.hardtanh.default,
                                                         torch.ops.aten.hardtanh_.default):
        return False
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
    return isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi


def annotate_conv_clamp(gm, config, filter_fn=None) -> int:
    """Annotate each conv -> hardtanh (the conv's only user) as one quantized partition: the
    conv's input and weights (and bias) quantized as the "conv_relu" pattern does, the output
    observed after the clamp. Returns the number of patterns annotated."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        QuantizationAnnotation,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import get_bias_qspec
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    if config is None or config.input_activation is None or config.input_activation.is_dynamic:
        return 0  # dynamic int8 has no output range to fuse a clamp into
    done = 0
    for clamp in list(gm.graph.nodes):
        if not _is_clamp(clamp) or not hasattr(clamp.args[0], "op") or not _is_conv(clamp.args[0]):
            continue
        conv = clamp.args[0]
        if len(conv.users) != 1:
            continue
        weight = conv.args[1]
        bias = conv.args[2] if len(conv.args) > 2 and hasattr(conv.args[2], "op") else None
        partition = [clamp, conv, weight] + ([bias] if bias is not None else [])
        if any(Q_ANNOTATION_KEY in n.meta and n.meta[Q_ANNOTATION_KEY]._annotated for n in partition):
            continue
        if filter_fn is not None and not all(filter_fn(n) for n in partition):
            continue
        qspecs = {conv.args[0]: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        if bias is not None:
            qspecs[bias] = get_bias_qspec(config)
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        for n in (weight, bias):
            if n is not None:
                n.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        done += 1
    return done


def integer_scalars_back(gm) -> int:
    """Undo XNNPACKQuantizer's scalar -> tensor constant rewrite on integer adds and muls.

    Its transform_for_annotation turns every scalar operand of add/mul into a float32 constant
    tensor, integer ops included: Keras' Embedding (torch backend) wraps negative token ids with
    `where(ids < 0, ids + vocab, ids)`, the int64 `ids + vocab` became `ids + tensor(20.)`, a
    float, and aten.embedding refused its indices ("Expected tensor for argument #1 'indices' to
    have one of the following scalar types: Long, Int"). An op whose traced value is an integer
    tensor gets its scalar back, so integer ids stay integer; the gather stays a float op outside
    the quantized graph. Returns the number of scalars put back."""
    import torch

    aten = torch.ops.aten
    restored, replaced = 0, set()
    for node in list(gm.graph.nodes):
        val = node.meta.get("val")
        if (node.op != "call_function" or node.target not in (aten.add.Tensor, aten.mul.Tensor)
                or not isinstance(val, torch.Tensor) or val.is_floating_point()):
            continue
        args = list(node.args)
        for i, arg in enumerate(args):
            if getattr(arg, "op", None) != "get_attr" or not str(arg.target).startswith("_tensor_constant_"):
                continue
            constant = getattr(gm, arg.target)
            if constant.dim() != 0 or not constant.is_floating_point() or constant.item() != int(constant.item()):
                continue
            args[i] = int(constant.item())
            replaced.add(arg)
            restored += 1
        node.args = tuple(args)
    for node in replaced:
        if not node.users:
            gm.graph.erase_node(node)
    if restored:
        gm.recompile()
    return restored


def pads_quantized_with_their_conv(gm) -> int:
    """A zero pad whose one user is a conv (Keras' ZeroPadding2D / correct_pad, or any explicit pad): the conv's
    activation qspec moves in front of the pad, so the pad reads a dequantize and feeds the conv directly.
    ExecuTorch's XNNPACK partitioner takes dq -> pad -> conv -> q as one quantized conv (its conv config's
    activation deps), and InsertPadQDQPass serializes the pad as a quantized static pad: int8 throughout, at the
    conv's own kernel size. Returns the number of pads moved."""
    import torch
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY, QuantizationAnnotation

    moved = 0
    for conv in gm.graph.nodes:
        if conv.op != "call_function" or conv.target != torch.ops.aten.conv2d.default:
            continue
        pad = conv.args[0]
        amounts = _zero_pad_amounts(pad) if hasattr(pad, "op") else None
        annotation = conv.meta.get(Q_ANNOTATION_KEY)
        if amounts is None or len(pad.users) != 1 or annotation is None or pad not in annotation.input_qspec_map \
                or any(amounts.get(d, (0, 0)) != (0, 0) for d in (0, 1)) or Q_ANNOTATION_KEY in pad.meta:
            continue
        qspec = annotation.input_qspec_map.pop(pad)
        pad.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={pad.args[0]: qspec}, _annotated=True)
        moved += 1
    return moved


def clamp_fusing_quantizer():
    """A new XNNPACKQuantizer (subclass) that also annotates conv -> ReLU6 / hardtanh as one
    pattern. Configure it as XNNPACKQuantizer (set_global, set_filter_function)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class ClampFusingQuantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            model = super().transform_for_annotation(model)
            integer_scalars_back(model)
            relu6_to_hardtanh(model)
            return model

        def annotate(self, model):
            annotate_conv_clamp(model, self.global_config, self.filter_fn)
            model = super().annotate(model)
            pads_quantized_with_their_conv(model)
            return model

    return ClampFusingQuantizer()


# ---------------------------------------------------------------------------------------------
# Zero pads before convs (Keras' ZeroPadding2D / correct_pad before a stride-2 conv)


def _zero_pad_amounts(node):
    """{dim: (before, after)} of a constant zero aten.pad / constant_pad_nd, else None."""
    import torch

    aten = torch.ops.aten
    if node.op != "call_function" or node.target not in (aten.pad.default, aten.constant_pad_nd.default):
        return None
    if node.target == aten.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    else:
        mode, value = "constant", node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
    val = node.args[0].meta.get("val") if hasattr(node.args[0], "meta") else None
    if mode != "constant" or value not in (None, 0, 0.0) or not isinstance(val, torch.Tensor):
        return None
    pad, ndim = list(node.args[1]), val.dim()
    if any(not isinstance(p, int) or p < 0 for p in pad):
        return None
    return {ndim - 1 - k: (pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)}


def pad_after_permute(gm) -> int:
    """permute(pad(x, p), perm) -> pad(permute(x, perm), p'), p' the same zeros on the same data
    dims: a Keras graph pads its NHWC input, then the layout permute comes. With the pad behind
    the permute it sits right before the conv, where XNNPACK takes it with the conv (fp32, and int8 through
    pads_quantized_with_their_conv); in front of the permute it is an op of its own
    on a tensor whose rows are 3 floats long. Returns the number of pads moved."""
    import torch

    aten = torch.ops.aten
    moved = 0
    for node in list(gm.graph.nodes):
        amounts = _zero_pad_amounts(node)
        if amounts is None or len(node.users) != 1:
            continue
        permute = next(iter(node.users))
        if permute.op != "call_function" or permute.target != aten.permute.default:
            continue
        perm, x = list(permute.args[1]), node.args[0]
        ndim = len(perm)
        perm = [p % ndim for p in perm]
        new_amounts = {i: amounts.get(perm[i], (0, 0)) for i in range(ndim)}
        last = max([i for i, a in new_amounts.items() if a != (0, 0)], default=None)
        if last is None:
            continue
        first = min(i for i, a in new_amounts.items() if a != (0, 0))
        new_pad = [p for d in range(ndim - 1, first - 1, -1) for p in new_amounts[d]]
        with gm.graph.inserting_before(permute):
            p2 = gm.graph.call_function(aten.permute.default, (x, permute.args[1]))
            p2.meta = {**permute.meta, "val": x.meta["val"].permute(permute.args[1])}
            pad2 = gm.graph.call_function(aten.pad.default, (p2, new_pad))
            pad2.meta = dict(permute.meta)
        permute.replace_all_uses_with(pad2)
        gm.graph.erase_node(permute)
        gm.graph.erase_node(node)
        moved += 1
    if moved:
        gm.graph.lint()
        gm.recompile()
    return moved
