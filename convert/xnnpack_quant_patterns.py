"""XNNPACK's PT2E quantizer, taught the conv + ReLU6 pattern (issue 11, Keras -> .pte speed).

XNNPACKQuantizer fuses only ReLU into a conv ("conv_relu"): for conv -> ReLU6 (Keras' relu6,
torch's nn.ReLU6 = hardtanh(0, 6)) it quantizes the conv's output, then the clamp on its own, so
the int8 .pte runs every ReLU6 as a separate XNNClamp between two quantized tensors (35 of them in
a Keras MobileNetV2: 121 XNNPACK ops, 84 with this quantizer).

Not fixed here: a zero pad between a dequantize and a quantize (Keras' ZeroPadding2D before a
stride-2 depthwise conv) still runs in float in the XNNPACK delegate, with an XNNConvert on each
side (ExecuTorch's InsertPadQDQPass only quantizes a pad whose user is not a quantize).

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


def clamp_fusing_quantizer():
    """A new XNNPACKQuantizer (subclass) that also annotates conv -> ReLU6 / hardtanh as one
    pattern. Configure it as XNNPACKQuantizer (set_global, set_filter_function)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class ClampFusingQuantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            model = super().transform_for_annotation(model)
            relu6_to_hardtanh(model)
            return model

        def annotate(self, model):
            annotate_conv_clamp(model, self.global_config, self.filter_fn)
            return super().annotate(model)

    return ClampFusingQuantizer()
