"""The int4-weight recipe: 4-bit symmetric weights in groups of GROUP input channels, activations
quantized to int8 at run time, on the matrix-multiply layers of Linear-heavy models (convolutions
stay float). One function per format, each through that format's own tool:

  .pte     torchao's Int8DynamicActivationIntxWeightConfig (8da4w: weight_dtype=torch.int4,
           PerGroup(GROUP)) applied to the nn.Linear modules by `quantize_`, then torch.export and
           XNNPACK, whose partitioner takes the dynamically quantized linear with blockwise int4
           weights (qb4w) into its delegate
  .tflite  ai-edge-quantizer's dynamic_wi4b32_afp32 (blockwise-32 int4 weights, INTEGER compute:
           LiteRT quantizes the activations at run time) on FULLY_CONNECTED ops of the float .tflite
  .onnx    onnxruntime's MatMulNBitsQuantizer (symmetric, block GROUP, accuracy_level 4: int8
           activations in the kernel) on MatMul nodes; Gemm nodes with a constant weight are first
           rewritten as MatMul + Add, since the quantizer only takes MatMul

Layers whose input width GROUP does not divide stay float (each tool would refuse or pad them).
Measured on tests/planted/mlp_torch.py (64-256-256-10, digits): weakest-output SNR 30.3 dB (.pte),
32.4 dB (.tflite), 33.5 dB (.onnx), cosine >= 0.9996, artifacts 54-60 KB against 340 KB in float.
"""

from __future__ import annotations

from edgeship.errors import UnsupportedError
from edgeship.runtime.standalone.tflite import inspect_bytes

GROUP = 32
NONE_QUANTIZED = ("the int4-weight recipe quantizes matrix-multiply layers (nn.Linear, FULLY_CONNECTED, MatMul) "
                  f"whose input width is a multiple of {GROUP}")


def torch_8da4w(module):
    """A copy of `module` with its nn.Linear layers (in_features % GROUP == 0) quantized 8da4w.
    Returns (quantized copy, [names quantized], [names left float])."""
    import copy

    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    module = copy.deepcopy(module).eval()
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    chosen = {id(m) for _, m in linears if m.in_features % GROUP == 0}
    done = [n for n, m in linears if id(m) in chosen]
    kept = [n for n, m in linears if id(m) not in chosen]
    if not done:
        raise UnsupportedError(f"{NONE_QUANTIZED}; this model has {len(linears)} nn.Linear layer(s) and none fits",
                               hint="use dynamic-int8 or int8 for convolutional models")
    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(GROUP))
    quantize_(module, config, filter_fn=lambda m, _name: id(m) in chosen)
    return module, done, kept


def tflite_blockwise(data: bytes) -> tuple[bytes, int]:
    """The float .tflite `data` with its FULLY_CONNECTED weights in blockwise-GROUP int4 (dynamic
    int8 activations). Returns (new bytes, number of int4 weight tensors)."""
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.qtyping import TFLOperationName

    q = quantizer.Quantizer(bytes(data))
    q.load_quantization_recipe(recipe.dynamic_wi4b32_afp32(operation_name=TFLOperationName.FULLY_CONNECTED))
    out = bytes(q.quantize().quantized_model)
    count = int4_tensors(out)
    if count == 0:
        raise UnsupportedError(f"{NONE_QUANTIZED}; ai-edge-quantizer found no such FULLY_CONNECTED op in this model",
                               hint="use dynamic-int8 or int8 for convolutional models")
    return out, count


def int4_tensors(data: bytes) -> int:
    """How many tensors of a .tflite flatbuffer are INT4."""
    return sum(t["dtype"] == "int4" for t in inspect_bytes(data)["tensors"])


def onnx_matmul_nbits(proto):
    """The float ModelProto with its MatMul weights (constant, K a multiple of GROUP) in 4-bit
    blocks (com.microsoft MatMulNBits). Returns (new ModelProto, number of MatMulNBits nodes)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    import onnx

    work = onnx.ModelProto()
    work.CopyFrom(proto)
    gemm_to_matmul(work)
    config = DefaultWeightOnlyQuantConfig(block_size=GROUP, is_symmetric=True, accuracy_level=4)
    quantizer = MatMulNBitsQuantizer(work, algo_config=config)
    quantizer.process()
    result = quantizer.model.model
    count = sum(n.op_type == "MatMulNBits" for n in result.graph.node)
    if count == 0:
        raise UnsupportedError(f"{NONE_QUANTIZED}; onnxruntime's MatMulNBitsQuantizer found no such MatMul",
                               hint="use dynamic-int8 or int8 for convolutional models")
    return result, count


def gemm_to_matmul(proto) -> int:
    """Rewrite Gemm(A, W, C) nodes (alpha = beta = 1, no transA, W a constant) as MatMul(A, W')
    + Add(C), W' = W transposed where transB: the same function, in the form MatMulNBits takes.
    Returns how many were rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
                or attrs.get("beta", 1.0) != 1.0 or node.input[1] not in inits):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            w = w.T
        weight = f"{node.input[1]}_kxn"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), weight))
        out = node.output[0]
        bias = len(node.input) > 2 and node.input[2]
        product = f"{out}_matmul" if bias else out
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=f"{node.name}_matmul"))
        if bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [out], name=f"{node.name}_bias"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count
