"""Quantizer annotations that keep litert-torch's int8 .tflite integer end to end.

litert-torch's PT2EQuantizer finds adds, muls and cats through `source_fn_stack` metadata, which
torch.export no longer records for every node (a torch MobileNetV2's residual `x + y` is
missed), and has no annotation for PReLU, mean, matmul, softmax or rsqrt at all: those ops stay
float32 between DEQUANTIZE and QUANTIZE in the .tflite. `annotate_remaining` annotates, by ATen
target, every such op the standard patterns left out, with the quantizer's own activation specs,
so that the converter sees each one between a dequantize and a quantize and emits its int8 kernel.

Ops litert-torch lowers whole (PReLU, scaled_dot_product_attention, layer_norm) are rewritten into
their ATen pieces first (`prelu_as_int8_ops`, `attention_as_int8_ops`, `layer_norm_as_int8_ops`):
lowered whole, their insides reach the .tflite in float32 between one DEQUANTIZE and one QUANTIZE.
A transformer's int8 .tflite (bench/INT16X8.md: a ViT on digits) then runs BATCH_MATMUL, SOFTMAX,
MEAN, SUB, MUL, ADD, RSQRT, GELU, TRANSPOSE and RESHAPE in int8. Left float, with a note in the
export's warnings: attention with a mask (its -inf takes the scores' int8 range), dropout or
grouped-query heads.
"""

from __future__ import annotations

from edgeship.convert.layers import is_compute

# ATen ops LiteRT runs in int8 (ADD, MUL, SUB, CONCATENATION, MEAN, PRELU, MAXIMUM/MINIMUM,
# RELU, HARD_SWISH, BATCH_MATMUL, SOFTMAX, RSQRT, GELU, ...), by name: their tensor inputs and
# outputs get int8 activation specs (softmax its FIXED_RANGE output)
INT8_OPS = ("add", "mul", "sub", "neg", "cat", "mean", "prelu", "relu", "leaky_relu", "hardtanh", "hardswish", "maximum", "minimum",
            "avg_pool2d", "adaptive_avg_pool2d", "bmm", "matmul", "softmax", "_softmax", "rsqrt", "gelu")
# Clamps after a layer kept float (accuracy-aware int8): quantizing their input with the float
# layer's raw range would make the converter fuse the clamp into the float conv and quantize the
# clamped output with that wide range (EfficientNet-Lite0 with its stem conv float: 5 dB SNR)
CLAMPS = ("relu", "hardtanh")
# Ops whose int8 kernels in LiteRT insist on one output scale and zero point, whatever the data:
# LOGISTIC and SOFTMAX 1/256 and -128 (their output is in [0, 1)), TANH 1/128 and 0 ([-1, 1)).
# An observer's own step must not reach the converter: it forces the kernel's values on the op
# and then finds them unequal to the next tensor's ("type of return operand 0 ('...3.906250e-03:
# -128') doesn't match function result type ('...0.0039196601137518883:-128')": a mean over a
# size-1 axis, observed on its own, folded away behind a sigmoid).
FIXED_RANGE = {"sigmoid": (1 / 256, -128), "softmax": (1 / 256, -128), "_softmax": (1 / 256, -128),
               "tanh": (1 / 128, 0)}
# Ops whose outputs stay within their input's range: behind a fixed-range op they keep its quantization
RANGE_KEEPING = ("mean", "avg_pool2d", "adaptive_avg_pool2d", "max_pool2d", "amax", "amin", "relu", "hardtanh")
VIEWS = ("view", "reshape", "_unsafe_view", "squeeze", "unsqueeze", "flatten", "permute", "clone", "contiguous")
# Clamps LiteRT fuses into the conv in front of it (CONV_2D/DEPTHWISE_CONV_2D's fused activation RELU6 or
# RELU_N1_TO_1), by (low, high): only the clamp's output range reaches the .tflite
FUSED_CLAMPS = {(0.0, 6.0), (-1.0, 1.0)}
CONVS = ("conv1d", "conv2d", "convolution")
PASS_THROUGH = ("_native_batch_norm_legit_no_training", "batch_norm", "view", "reshape", "flatten", "permute",
                "clone", "contiguous")


def annotate_remaining(gm, quantization_config, filter_fn=None) -> int:
    """Annotate the INT8_OPS nodes of `gm` that carry no quantization annotation yet. Returns
    how many it annotated."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

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
        out_spec = fixed_qspec(node.target._opname) if node.target._opname in FIXED_RANGE else act_out
        if node.target._opname == "cat" and qmap:  # CONCATENATION: one scale for its inputs and output, or the
            # converter refuses it ('quantization parameters violate the same scale constraint': a U-Net's skip cat)
            first = next(iter(qmap))
            out_spec = SharedQuantizationSpec((first, node))
            qmap = {arg: (act_in if arg is first else out_spec) for arg in qmap}
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=qmap, output_qspec=out_spec, _annotated=True)
        done += 1
    keep_fixed_ranges(gm)
    share_epsilons(gm)
    return done


def share_epsilons(gm) -> int:
    """A norm's variance + eps in front of its rsqrt (whoever annotated the add): eps (1e-5) observed
    on its own gets a step of 4e-8, a scale ratio to the variance's that XNNPACK's int8 ADD refuses
    (the ADD falls back to LiteRT's kernel and splits the delegated graph), and it rounds to
    nothing on the variance's step anyway. The constant and the sum take the variance's
    quantization. Returns the number of adds changed."""
    import torch
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    changed = 0
    for node in gm.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if (annotation is None or getattr(node.target, "_opname", None) != "add" or not node.users
                or not all(getattr(u.target, "_opname", None) == "rsqrt" for u in node.users)):
            continue
        qmap = annotation.input_qspec_map
        consts = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op == "get_attr"
                  and isinstance(value := getattr(gm, a.target, None), torch.Tensor) and value.numel() == 1]
        others = [a for a in node.args if isinstance(a, torch.fx.Node) and a not in consts and a in qmap]
        if len(consts) != 1 or len(others) != 1:
            continue
        shared = SharedQuantizationSpec((others[0], node))
        qmap[consts[0]], annotation.output_qspec = shared, shared
        changed += 1
    return changed


def annotate_conv_clamps(gm, quantization_config, filter_fn=None) -> int:
    """conv -> ReLU6 (hardtanh or clamp to [0, 6], or to [-1, 1]) as one fused pattern, as litert-torch's
    conv_relu does conv -> relu: the conv's inputs and weights get their specs, the clamp's output the
    activation spec, and the conv's raw output, which LiteRT's fused conv never writes, no observer.
    Only where the conv's output is read by the clamp alone (BatchNorm is folded into the conv
    before annotation). Run before the stock patterns, which would observe the conv's output. Returns
    the number of pairs annotated."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    done = 0
    for clamp in gm.graph.nodes:
        if clamp.op != "call_function" or _clamp_bounds(clamp) not in FUSED_CLAMPS:
            continue
        conv = clamp.args[0]
        if (not isinstance(conv, torch.fx.Node) or conv.op != "call_function"
                or getattr(conv.target, "_opname", None) not in CONVS or len(conv.users) != 1):
            continue
        weight, bias = conv.args[1], conv.args[2] if len(conv.args) > 2 else None
        if not isinstance(conv.args[0], torch.fx.Node) or not isinstance(weight, torch.fx.Node):
            continue
        partition = [clamp, conv, weight] + ([bias] if isinstance(bias, torch.fx.Node) else [])
        if any("quantization_annotation" in n.meta for n in partition):
            continue
        if filter_fn is not None and not all(filter_fn(n) for n in partition):
            continue
        qmap = {conv.args[0]: get_input_act_qspec(quantization_config), weight: get_weight_qspec(quantization_config)}
        if isinstance(bias, torch.fx.Node):
            qmap[bias] = get_bias_qspec(quantization_config)
        conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        clamp.meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=get_output_act_qspec(quantization_config), _annotated=True)
        for n in partition[2:]:  # the weight and bias: taken, as the stock patterns mark theirs
            n.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
        done += 1
    return done


def _clamp_bounds(node):
    """(low, high) of a hardtanh or clamp node with constant bounds, else None."""
    name = getattr(node.target, "_opname", None)
    if name in ("hardtanh", "hardtanh_"):
        args = list(node.args[1:3])
        low = args[0] if args else node.kwargs.get("min_val", -1.0)
        high = args[1] if len(args) > 1 else node.kwargs.get("max_val", 1.0)
    elif name in ("clamp", "clamp_"):
        args = list(node.args[1:3])
        low = args[0] if args else node.kwargs.get("min")
        high = args[1] if len(args) > 1 else node.kwargs.get("max")
    else:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    return float(low), float(high)


def fixed_qspec(opname: str):
    """The FixedQParamsQuantizationSpec LiteRT's int8 kernel of `opname` (FIXED_RANGE) requires."""
    import torch
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec

    scale, zero_point = FIXED_RANGE[opname]
    return FixedQParamsQuantizationSpec(dtype=torch.int8, scale=scale, zero_point=zero_point, quant_min=-128,
                                        quant_max=127, qscheme=torch.per_tensor_affine)


def fixed_range_of(node):
    """The fixed quantization `node`'s value must have: that of the sigmoid/softmax/tanh it comes
    from through views and RANGE_KEEPING ops, else None."""
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec

    while hasattr(node, "op") and node.op == "call_function":
        name = getattr(node.target, "_opname", None)
        if name in FIXED_RANGE:
            spec = getattr(node.meta.get("quantization_annotation"), "output_qspec", None)
            return spec if isinstance(spec, FixedQParamsQuantizationSpec) else fixed_qspec(name)
        if name not in VIEWS + RANGE_KEEPING or not node.args:
            return None
        node = node.args[0]
    return None


def keep_fixed_ranges(gm) -> int:
    """Whoever annotated them (litert-torch's patterns or annotate_remaining), the tensors that
    carry a sigmoid's, softmax's or tanh's value get that op's fixed quantization instead of an
    observer's: each input edge from one, and the output of a RANGE_KEEPING op behind one (in
    graph order, so a chain sigmoid -> squeeze -> mean -> view keeps 1/256 to the end). Returns
    the number of specs replaced."""
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationSpec

    replaced = 0
    for node in gm.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if annotation is None or node.op != "call_function":
            continue
        for arg, spec in list(annotation.input_qspec_map.items()):
            if isinstance(spec, QuantizationSpec) and (fixed := fixed_range_of(arg)) is not None:
                annotation.input_qspec_map[arg] = fixed
                replaced += 1
        out = annotation.output_qspec
        if (getattr(node.target, "_opname", None) in RANGE_KEEPING and node.args
                and not isinstance(out, FixedQParamsQuantizationSpec) and out is not None
                and (fixed := fixed_range_of(node.args[0])) is not None):
            annotation.output_qspec = fixed
            replaced += 1
    return replaced


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


# Node metadata a rewritten op's replacements inherit: the module path (float_layers' filter reads
# nn_module_stack) and the source line
INHERITED_META = ("nn_module_stack", "stack_trace", "source_fn_stack", "from_node")


def _call(graph, original, target, args, kwargs=None):
    node = graph.call_function(target, args, kwargs or {})
    node.meta.update({k: original.meta[k] for k in INHERITED_META if k in original.meta})
    return node


def attention_as_int8_ops(gm) -> tuple[int, list[str]]:
    """scaled_dot_product_attention(q, k, v) -> softmax((q @ k^T) * scale) @ v, before quantization.

    litert-torch lowers the fused op to BATCH_MATMUL, MUL, SOFTMAX and BATCH_MATMUL with no quantize
    between them: all float32 between one DEQUANTIZE and one QUANTIZE. Written as these ATen ops,
    each is annotated, and LiteRT gets int8 BATCH_MATMUL and SOFTMAX. Same values in float.
    Attention with a mask (attn_mask or is_causal), dropout or grouped-query heads is left as it is:
    an additive mask's -inf (or -1e4) would take the scores' whole int8 range. Returns the number
    rewritten and, per attention left float, why."""
    import math

    import torch

    aten = torch.ops.aten
    changed, kept = 0, []
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.scaled_dot_product_attention.default:
            continue
        args = dict(zip(names, node.args)) | {k: v for k, v in node.kwargs.items() if k in names}
        q, k, v = args["query"], args["key"], args["value"]
        why = ("a mask" if args.get("attn_mask") is not None else "causal masking" if args.get("is_causal")
               else "dropout" if args.get("dropout_p") else "grouped-query heads" if node.kwargs.get("enable_gqa")
               else None)
        qv = q.meta.get("val") if isinstance(q, torch.fx.Node) else None
        if why is None and (not isinstance(qv, torch.Tensor) or qv.dim() < 2):
            why = "no static query shape"
        if why is not None:
            kept.append(f"{node.name} ({why})")
            continue
        scale = node.kwargs.get("scale") or 1.0 / math.sqrt(qv.shape[-1])
        g = gm.graph
        with g.inserting_before(node):
            scores = _call(g, node, aten.matmul.default, (q, _call(g, node, aten.transpose.int, (k, -2, -1))))
            probs = _call(g, node, aten.softmax.int, (_call(g, node, aten.mul.Tensor, (scores, scale)), -1))
            out = _call(g, node, aten.matmul.default, (probs, v))
        node.replace_all_uses_with(out)
        g.erase_node(node)
        changed += 1
    if changed:
        gm.recompile()
    return changed, kept


def layer_norm_as_int8_ops(gm) -> int:
    """layer_norm(x) -> d * rsqrt(mean(d * d) + eps) * w + b with d = x - mean(x), before quantization.

    litert-torch lowers layer_norm to one batch-norm that the converter spreads out into MEAN,
    SQUARED_DIFFERENCE, ADD, RSQRT, SUB, MUL and ADD in float32 between one DEQUANTIZE and one
    QUANTIZE. Written as ATen ops, each is annotated and converted in int8 (MEAN, SUB, MUL, ADD and
    RSQRT have int8 kernels). Same values in float. Takes layer_norm and native_layer_norm (when
    only its output, not its mean and rstd, is read). Returns the number rewritten."""
    import operator

    import torch

    aten = torch.ops.aten
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.layer_norm.default, aten.native_layer_norm.default):
            continue
        native = node.target == aten.native_layer_norm.default
        if native and not all(u.target is operator.getitem and u.args[1] == 0 for u in node.users):
            continue
        params = ("input", "normalized_shape", "weight", "bias", "eps")
        args = dict(zip(params, node.args)) | {k: v for k, v in node.kwargs.items() if k in params}
        x, dims = args["input"], list(range(-len(args["normalized_shape"]), 0))
        weight, bias, eps = args.get("weight"), args.get("bias"), args.get("eps", 1e-5)
        g = gm.graph
        with g.inserting_before(node):
            d = _call(g, node, aten.sub.Tensor, (x, _call(g, node, aten.mean.dim, (x, dims, True))))
            var = _call(g, node, aten.mean.dim, (_call(g, node, aten.mul.Tensor, (d, d)), dims, True))
            rstd = _call(g, node, aten.rsqrt.default, (_call(g, node, aten.add.Tensor, (var, eps)),))
            out = _call(g, node, aten.mul.Tensor, (d, rstd))
            if weight is not None:
                out = _call(g, node, aten.mul.Tensor, (out, weight))
            if bias is not None:
                out = _call(g, node, aten.add.Tensor, (out, bias))
        for user in list(node.users) if native else [node]:
            user.replace_all_uses_with(out)
            if native:
                g.erase_node(user)
        g.erase_node(node)
        changed += 1
    if changed:
        gm.recompile()
    return changed
