"""Quantizer annotations that keep litert-torch's int8 .tflite integer end to end.

litert-torch's PT2EQuantizer finds adds, muls and cats through `source_fn_stack` metadata, which
torch.export no longer records for every node (a torch MobileNetV2's residual `x + y` is
missed), and has no annotation for PReLU or mean at all: those ops stay float32 between
DEQUANTIZE and QUANTIZE in the .tflite. `annotate_remaining` annotates, by ATen target, every
such op the standard patterns left out, with the quantizer's own activation specs, so that the
converter sees each one between a dequantize and a quantize and emits its int8 kernel.
"""

from __future__ import annotations

from edgeship.convert.layers import is_compute

# ATen ops LiteRT runs in int8 (ADD, MUL, SUB, CONCATENATION, MEAN, PRELU, MAXIMUM/MINIMUM,
# RELU, HARD_SWISH, ...), by name: their tensor inputs and outputs get int8 activation specs
INT8_OPS = ("add", "mul", "sub", "neg", "cat", "mean", "prelu", "relu", "hardtanh", "hardswish", "maximum", "minimum",
            "avg_pool2d", "adaptive_avg_pool2d")
# Clamps after a layer kept float (accuracy-aware int8): quantizing their input with the float
# layer's raw range would make the converter fuse the clamp into the float conv and quantize the
# clamped output with that wide range (EfficientNet-Lite0 with its stem conv float: 5 dB SNR)
CLAMPS = ("relu", "hardtanh")
PASS_THROUGH = ("_native_batch_norm_legit_no_training", "batch_norm", "view", "reshape", "flatten", "permute",
                "clone", "contiguous")


def annotate_remaining(gm, quantization_config, filter_fn=None) -> int:
    """Annotate the INT8_OPS nodes of `gm` that carry no quantization annotation yet. Returns
    how many it annotated."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    act_in, act_out = get_input_act_qspec(quantization_config), get_output_act_qspec(quantization_config)
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "_opname", None) not in INT8_OPS:
            continue
        if "quantization_annotation" in node.meta or (filter_fn is not None and not filter_fn(node)):
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or not val.is_floating_point():
            continue
        inputs = node.args[0] if node.target._opname == "cat" else node.args
        qmap = {}
        for i, arg in enumerate(inputs):
            if not isinstance(arg, torch.fx.Node):
                continue
            if node.target._opname == "prelu" and i == 1:
                continue  # PReLU's alpha: a constant the converter quantizes with the weights
            if node.target._opname in CLAMPS and _behind_float_layer(arg, filter_fn):
                continue  # a clamp behind a float layer: it runs in float, only its output is quantized
            arg_val = arg.meta.get("val")
            if isinstance(arg_val, torch.Tensor) and arg_val.is_floating_point():
                qmap[arg] = act_in
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=qmap, output_qspec=act_out, _annotated=True)
        done += 1
    return done


def _behind_float_layer(node, filter_fn) -> bool:
    """Whether `node`'s value comes from a conv/linear the filter keeps float, through ops that
    only pass it on (BatchNorm, getitem, views)."""
    import operator

    while node.op == "call_function" and (node.target is operator.getitem or
                                          getattr(node.target, "_opname", None) in PASS_THROUGH):
        node = node.args[0]
    return filter_fn is not None and is_compute(node) and not filter_fn(node)


def prelu_as_int8_ops(gm) -> int:
    """prelu(x, a) -> x + relu(-x) * (1 - a), before quantization.

    litert-torch lowers a PReLU to RELU/MUL/SUB in float32 whatever its annotation says; written
    as these ops (each with an int8 kernel in LiteRT), each is annotated and converted in int8.
    No relu sits right behind the producer of x, so a conv before it is not fused with one (which
    would leave its raw output, needed here, unquantized). Same values in float. Returns the number of PReLUs rewritten."""
    import torch

    aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.prelu.default:
            continue
        x, alpha = node.args[:2]
        val = x.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dim() < 2:
            continue
        shape = [1, -1] + [1] * (val.dim() - 2)  # alpha is per channel (dim 1)
        g = gm.graph
        with g.inserting_before(node):
            one_minus_a = g.call_function(aten.rsub.Scalar, (g.call_function(aten.reshape.default, (alpha, shape)), 1))
            neg = g.call_function(aten.relu.default, (g.call_function(aten.neg.default, (x,)),))
            out = g.call_function(aten.add.Tensor, (x, g.call_function(aten.mul.Tensor, (neg, one_minus_a))))
        node.replace_all_uses_with(out)
        g.erase_node(node)
        changed += 1
    if changed:
        gm.recompile()
    return changed
