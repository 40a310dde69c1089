"""Int8 HARD_SWISH rewritten as three int8 ops XNNPACK delegates, in the .tflite itself.

LiteRT's XNNPACK delegate takes HARD_SWISH in float only: its VisitHardSwishNode checks the input
and output with CheckTensorFloat32Type (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc; the
ai-edge-litert 2.3 delegate refuses every int8 HARD_SWISH, tests/test_hard_swish_int8.py). Both
.tflite routes emit one: TFLiteConverter fuses Keras' `x * relu6(x + 3) / 6` into HARD_SWISH before
it quantizes (whatever form the Keras model spells it in), litert-torch lowers aten.hardswish to it.
In an int8 .tflite each one then runs on TFLite's own CPU kernels and cuts XNNPACK's partition in
two (Keras' MobileNetV3-Small from examples/families: 19 of them, 91/111 ops delegated).

`hard_swish_as_xnnpack_ops` replaces each int8 HARD_SWISH (per-tensor input and output) by

    t = ADD(x, 3), fused RELU6     relu6(x + 3) in [0, min(6, x_max + 3)]: scale that / 255, zero point -128
    h = MUL(t, 1/6)                t / 6, scale t's / 6, zero point t's: the same codes as t (no rounding)
    y = MUL(x, h)                  HARD_SWISH's own output tensor, scale and zero point

each an int8 op XNNPACK takes. No calibration is needed: x's range is its own quantization's,
t's and h's follow from it. The constants 3 and 1/6 are int8 scalars at code 127 (exact). Against
LiteRT's int8 HARD_SWISH kernel the result differs by at most one step of the output on the
whole int8 range of x (t carries 8 bits over [0, 6]; the kernel's own intermediate is wider).

Measured on that MobileNetV3-Small (int8, float I/O, this host, 1 thread): 148/149 ops delegated (the
last, an int8 SOFTMAX, is float-only in XNNPACK too), p50 0.110 -> 0.050 ms (fp32: 0.098), cosine vs
float on the 450 held-out digits 0.99862 -> 0.99896, top-1 96.7% both (float 97.1%).
"""

from __future__ import annotations

import numpy as np

from edgeship.convert.tflite_opcodes import opcode_index

THREE, SIXTH = 3.0, 1.0 / 6.0


def hard_swish_as_xnnpack_ops(data: bytes) -> tuple[bytes, int]:
    """(the model with each int8 HARD_SWISH written as ADD/MUL/MUL, how many were rewritten)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils


    if not _has_hard_swish(data, fb):
        return data, 0
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    done = 0
    add = mul = None
    for graph in model.subgraphs:
        ops = []
        for op in graph.operators:
            x_q = _int8_per_tensor(graph, op, fb)
            if codes[op.opcodeIndex] != fb.BuiltinOperator.HARD_SWISH or x_q is None:
                ops.append(op)
                continue
            if add is None:  # int8 ADD and MUL are version 2 of their ops
                add = opcode_index(model, fb.BuiltinOperator.ADD, version=2)
                mul = opcode_index(model, fb.BuiltinOperator.MUL, version=2)
            ops += _rewrite(model, graph, op, x_q, add, mul, fb)
            done += 1
        graph.operators = ops
    if not done:
        return data, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), done


def _has_hard_swish(data: bytes, fb) -> bool:
    """Whether the model's op codes name HARD_SWISH at all (a quick look: no object tree built)."""
    model = fb.Model.GetRootAs(data, 0)
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == fb.BuiltinOperator.HARD_SWISH:
            return True
    return False


def _int8_per_tensor(graph, op, fb) -> tuple[float, int] | None:
    """(scale, zero point) of the op's input when its one input and output are int8 per tensor."""
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        return None
    found = []
    for idx in (op.inputs[0], op.outputs[0]):
        t = graph.tensors[idx]
        q = t.quantization
        if t.type != fb.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1 \
                or q.zeroPoint is None or len(q.zeroPoint) != 1:
            return None
        found.append((float(q.scale[0]), int(q.zeroPoint[0])))
    return found[0]


def _rewrite(model, graph, op, x_q: tuple[float, int], add: int, mul: int, fb) -> list:
    """The three operators that replace HARD_SWISH `op` (module docstring)."""
    x, y = op.inputs[0], op.outputs[0]
    scale, zero = x_q
    x_max = (127 - zero) * scale
    t_max = float(min(6.0, max(x_max + THREE, 1e-3)))  # relu6(x + 3) never exceeds it
    name = _name(graph.tensors[y])
    t = _tensor(graph, graph.tensors[x], f"{name}/relu6_x_plus_3", t_max / 255, -128, fb)
    h = _tensor(graph, graph.tensors[x], f"{name}/hard_sigmoid", t_max / 6 / 255, -128, fb)
    three = _scalar(model, graph, f"{name}/three", THREE, fb)
    sixth = _scalar(model, graph, f"{name}/one_sixth", SIXTH, fb)
    return [_op(add, [x, three], [t], fb.BuiltinOptions.AddOptions, _options(fb.AddOptionsT, fb.ActivationFunctionType.RELU6)),
            _op(mul, [t, sixth], [h], fb.BuiltinOptions.MulOptions, _options(fb.MulOptionsT)),
            _op(mul, [x, h], [y], fb.BuiltinOptions.MulOptions, _options(fb.MulOptionsT))]


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "hard_swish")


def _quantization(scale: float, zero: int, fb):
    q = fb.QuantizationParametersT()
    q.scale, q.zeroPoint = [float(scale)], [int(zero)]
    return q


def _tensor(graph, like, name: str, scale: float, zero: int, fb) -> int:
    """A new int8 activation tensor shaped like tensor `like`."""
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.name = list(like.shape), fb.TensorType.INT8, 0, name
    if like.shapeSignature is not None:
        t.shapeSignature = list(like.shapeSignature)
    t.quantization = _quantization(scale, zero, fb)
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _scalar(model, graph, name: str, value: float, fb) -> int:
    """A constant int8 scalar holding `value` exactly: code 127, scale value / 127, zero point 0."""
    buffer = fb.BufferT()
    buffer.data = np.array([127], dtype=np.int8).view(np.uint8)
    model.buffers.append(buffer)
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.name = [], fb.TensorType.INT8, len(model.buffers) - 1, name
    t.quantization = _quantization(value / 127, 0, fb)
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _options(cls, activation=None):
    options = cls()
    options.fusedActivationFunction = activation if activation is not None else 0  # NONE
    return options


def _op(opcode: int, inputs: list[int], outputs: list[int], options_type: int, options):
    from ai_edge_litert import schema_py_generated as fb

    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op
