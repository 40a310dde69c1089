"""Keras / TF SavedModel -> .onnx with tf2onnx (checked: tf2onnx 1.17 with TensorFlow 2.21 and
Keras 3), then the recipe with onnxruntime's tools (convert/onnx_common.py).

Keras models convert through a tf.function around their inference call, SavedModels through one
around their serving signature (`tf2onnx.convert.from_function`); both with static batch-1 inputs named as the model
names them, and the model's input layout (NHWC for Keras image models) kept as it is.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from edgeship.convert import onnx_common as common
from edgeship.convert.base import ConvertOptions, ConvertResult, converter_message
from edgeship.convert.layers import keras_onnx_layer, keras_onnx_nodes
from edgeship.errors import ConversionError, InputError, error_line

ROUTE = "tf2onnx -> onnxruntime .onnx"
OPSET = 17


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind not in ("keras", "savedmodel"):
        raise InputError(f"the Keras -> .onnx route takes a Keras model or a SavedModel, not '{model.kind}'")
    common.check_recipe(recipe, calib, "keras")
    proto, versions = export_float(model, options.verbose)
    float_nodes, kept = masked_scores(proto) if recipe.name == "int8" else ((), [])
    asked = options.float_layers if recipe.name == "int8" else ()
    if asked:  # accuracy-aware mode's layers: every node of each stays out of quantize_static
        by_layer = keras_onnx_nodes(proto, asked)
        float_nodes += tuple(n for layer in asked for n in by_layer[layer] if n not in float_nodes)
    step, notes = common.apply_recipe(proto, recipe, calib, Path(out_path), options.int8_io, options.verbose,
                                       calibration=options.calibration, float_nodes=float_nodes)
    if kept:
        notes = [f"kept float: {', '.join(kept)} (a masked softmax's input: the mask's constant "
                 f"{_masking_constant(proto):.3g} beside the scores leaves int8 one code for every score)"] + notes
    also = f", kept float: {', '.join(asked)}" if asked else ""
    return ConvertResult(route=f"tf2onnx (opset {OPSET}) -> {step}{also} -> .onnx",
                         tools={**versions, **common.versions("tf2onnx")}, delegation=None, warnings=notes)


MASKING = 1e8  # |constant| at or above which a constant is a mask's "minus infinity", not a weight
# the ops between the masking constant and the Softmax it masks (where(mask, scores, -big) as tf2onnx writes it:
# Add(Mul(scores, Cast(mask)), Mul(-big, Cast(Not(mask)))), through reshapes)
_MASK_PATH = ("Mul", "Add", "Sub", "Where", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Expand", "Softmax")


def masked_scores(proto) -> tuple[tuple[str, ...], list[str]]:
    """(node names, Keras layers they sit in) that int8 must leave in float: the path from a masking constant
    (|c| >= MASKING: Keras' masked softmax writes where(mask, scores, -3.4e38 * 0.7), its MultiHeadAttention
    with a padding mask) to the Softmax it masks. onnxruntime's QDQ puts one int8 scale on the masked scores,
    whose range then reaches -2.4e38: every real score rounds to the same code and attention becomes a plain
    average over the unmasked positions (langid_keras: int8 top-1 57.8% against 79.8% float on 400 held-out
    strings; with these nodes float 79.8%). A path that reaches no Softmax is left as it is."""
    import numpy as np
    from onnx import numpy_helper

    big = {t.name for t in proto.graph.initializer
           if t.data_type == 1 and np.abs(numpy_helper.to_array(t)).max(initial=0) >= MASKING}
    for node in proto.graph.node:  # tf2onnx also writes constants as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.dtype == np.float32 and np.abs(value).max(initial=0) >= MASKING:
                big.update(node.output)
    readers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept: list[str] = []
    for start in [n for n in proto.graph.node if n.op_type in _MASK_PATH and big.intersection(n.input)]:
        path, frontier, reached = [start], [start], False
        while frontier:
            node = frontier.pop()
            if node.op_type == "Softmax":
                reached = True
                continue
            for out in node.output:
                for reader in readers.get(out, []):
                    if reader.op_type in _MASK_PATH and reader not in path:
                        path.append(reader)
                        frontier.append(reader)
        if reached:
            kept.extend(n.name for n in path if n.name not in kept)
    layers = sorted({keras_onnx_layer(name) for name in kept})
    return tuple(kept), layers


def _masking_constant(proto) -> float:
    import numpy as np
    from onnx import numpy_helper

    values = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == 1]
    return float(min((v.min() for v in values if v.size and np.abs(v).max() >= MASKING), default=-MASKING))


def export_float(model, verbose: bool = False):
    """(float32 ModelProto, tool versions)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with common.quiet(verbose):
        import tensorflow as tf
        import tf2onnx

    # not ERROR: its "Unsupported ops" line names ops (Erfc) that erfc_as_erf then rewrites; an op
    # left unsupported fails the trial load, whose error says which
    tf2onnx.logging.set_level(tf2onnx.logging.DEBUG if verbose else tf2onnx.logging.CRITICAL)
    specs = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in model.io.inputs]
    try:
        with common.quiet(verbose):
            function = _keras_call(model, specs, tf) if model.kind == "keras" else _serving(model, specs, tf)
            tf2onnx.utils.INTERNAL_NAME = 1  # its process-wide name counter: same model, same names
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=OPSET)
            captured_as_initializers(proto, function, [s.name for s in specs])
            proto.graph.doc_string = ""  # names TensorFlow's traced function, whose number changes per trace
            proto.graph.name = model.name
            erfc_as_erf(proto)
            renumber(proto)
    except Exception as e:
        raise ConversionError(f"tf2onnx could not convert '{model.name}': "
                              f"{converter_message(error_line(e, with_type=True))}",
                              hint="run with --verbose for tf2onnx's log, or try --to tflite") from None
    versions = {"tensorflow": tf.__version__}
    if model.kind == "keras":
        import keras

        versions["keras"] = keras.__version__
    return proto, versions


def captured_as_initializers(proto, function, input_names: list[str]) -> None:
    """Tensors the traced call captured by value (a Normalization layer's mean and variance given as lists, held as
    constant tensors, not variables) reach the .onnx as extra graph inputs: tf2onnx freezes variables, not these,
    and the artifact then asked its user for three inputs. Each becomes an initializer holding its value."""
    from onnx import numpy_helper

    values = {}
    concrete = function.get_concrete_function()
    for outer, inner in zip(concrete.captured_inputs, concrete.graph.internal_captures):
        if outer.dtype.name != "resource":
            values[inner.name] = outer.numpy()
    extra = [i for i in proto.graph.input if i.name not in input_names]
    missing = [i.name for i in extra if i.name not in values]
    if missing:
        raise ConversionError(f"the .onnx has inputs the model does not: {', '.join(missing)}")
    for graph_input in extra:
        proto.graph.initializer.append(numpy_helper.from_array(values[graph_input.name], graph_input.name))
        proto.graph.input.remove(graph_input)


def _keras_call(model, specs, tf):
    """The Keras model's inference call as a tf.function. (tf2onnx's own `from_keras` fails on
    Keras 3 models loaded from .keras files: it looks up Keras 3's symbolic tensor names.)"""
    keras_model = model.obj
    out_names = [o.name for o in model.io.outputs]

    @tf.function(input_signature=specs)
    def call(*args):
        out = keras_model(args[0] if len(args) == 1 else list(args), training=False)
        return [tf.identity(o, name=n) for o, n in zip(tf.nest.flatten(out), out_names)]

    return call


def _serving(model, specs, tf):
    """The SavedModel's serving signature as a function of positional inputs (the model's order,
    sorted by name as edgeship loads them) returning its outputs in the model's order."""
    serving = model.obj.signatures["serving_default"]
    names = sorted(serving.structured_input_signature[1])
    out_names = [o.name for o in model.io.outputs]

    @tf.function(input_signature=specs)
    def serve(*args):
        result = serving(**dict(zip(names, args)))
        return [tf.identity(result[k], name=k) for k in out_names]

    return serve


def erfc_as_erf(proto) -> int:
    """Erfc(x) -> Sub(1, Erf(x)), the same function. tf2onnx writes TensorFlow's Erfc as an Erfc
    node (Keras' exact GELU, `Dense(activation="gelu")`, is 0.5 * x * erfc(-x / sqrt 2)), an op
    ONNX does not define: onnxruntime refused to load the model ("No Op registered for Erfc").
    Erf is a standard op. Returns the number of nodes rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        erf, one = f"{node.output[0]}/erf", f"{node.name}/one"
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}/Erf"))
        nodes.append(helper.make_node("Sub", [one, erf], list(node.output), name=node.name))
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


_NUMBERED = re.compile(r"__\d+(?=(:\d+)?$)")


def renumber(proto) -> None:
    """tf2onnx numbers the names it makes ('conv__6:0') from a process-wide counter that earlier
    conversions and traces advance. Renumber them in graph order, so the same model gives the same
    bytes whatever ran before it. Graph inputs and outputs keep their names."""
    graph = proto.graph
    if any(a.type in (5, 10) for n in graph.node for a in n.attribute):  # GRAPH / GRAPHS: subgraphs, leave as is
        return
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    counter, mapping = itertools.count(1), {}

    def new(name: str) -> str:
        if not name or name in keep or not _NUMBERED.search(name):
            return name
        if name not in mapping:
            mapping[name] = _NUMBERED.sub(f"__{next(counter)}", name)
        return mapping[name]

    for node in graph.node:
        node.name = new(node.name)
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
    for t in graph.initializer:
        t.name = new(t.name)
    for v in graph.value_info:
        v.name = new(v.name)
