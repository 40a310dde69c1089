"""Keras / TF SavedModel -> LiteRT .tflite with TensorFlow's TFLiteConverter.

The model is first saved as a SavedModel whose serving signature has static, batch-1 inputs
(Keras' own `model.export`, or a wrapper around the SavedModel's serving function), and that
SavedModel is converted: the path that freezes Keras 3 variables reliably.

  fp32          float32
  fp16          float16 weights (Optimize.DEFAULT + supported_types float16), float compute
  dynamic-int8  int8 weights, activations quantized at run time (Optimize.DEFAULT, no data)
  int8          full-integer: TFLITE_BUILTINS_INT8, per-channel weights (the converter's default),
                activation ranges from the calibration data; float I/O unless options.int8_io
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight
from edgeship.convert import tflite_common as common
from edgeship.convert.base import ConvertOptions, ConvertResult
from edgeship.convert.layers import denylisted_nodes, keras_layers
from edgeship.errors import InputError, UnsupportedError
from edgeship.quantize.calibration import check_method

ROUTE = "TFLiteConverter -> LiteRT .tflite"


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind not in ("keras", "savedmodel"):
        raise InputError(f"the Keras -> .tflite route takes a Keras model or a SavedModel, not '{model.kind}'")
    ROUTES[("keras", "tflite")].require(recipe, calib)
    if options.calibration not in (None, "minmax"):
        check_method(options.calibration, "keras", "tflite")
    common.check_static(model)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with common.quiet_native_output(options.verbose):
        import tensorflow as tf

    int_io = recipe.name == "int8" and options.int8_io
    input_keys = [common.arg_name(s.name, i) for i, s in enumerate(model.io.inputs)]
    with tempfile.TemporaryDirectory(prefix="edgeship-savedmodel-") as tmp:
        with common.converting(f"saving '{model.name}' as a batch-1 SavedModel failed", options.verbose):
            output_keys = _save_static(model, input_keys, tmp, tf)
        with common.converting(f"TFLiteConverter could not convert '{model.name}' ({recipe.name})", options.verbose):
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
            _apply_recipe(converter, recipe.name, calib, input_keys, int_io, tf)
            if recipe.name == "int8" and options.float_layers:
                data = _selective_int8(converter, tmp, model, options.float_layers, int_io, tf)
            else:
                data = converter.convert()
        if recipe.name == "int4-weight":
            with common.converting("ai-edge-quantizer's blockwise int4 failed", options.verbose):
                data, _ = int4_weight.tflite_blockwise(data)
    warnings, delegation = common.finish(data, model, recipe.name, int_io, out_path, input_keys, output_keys,
                                         options.verbose)
    kept = f", kept float: {', '.join(options.float_layers)}" if recipe.name == "int8" and options.float_layers else ""
    return ConvertResult(route=f"{ROUTE} [{_describe(recipe.name, int_io)}{kept}]", tools=_versions(tf),
                         delegation=delegation, warnings=warnings)


def _save_static(model, input_keys: list[str], directory: str, tf) -> list[str]:
    """Write a SavedModel with a batch-1 'serving_default'; return its output keys in model order."""
    specs = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=k) for s, k in zip(model.io.inputs, input_keys)]
    if model.kind == "keras":
        structure = specs[0] if len(specs) == 1 else specs  # what the model's call takes
        model.obj.export(directory, format="tf_saved_model", input_signature=[structure], verbose=False)
        return [f"output_{i}" for i in range(len(model.io.outputs))]
    serving = model.obj.signatures["serving_default"]
    names = sorted(serving.structured_input_signature[1])  # edgeship orders SavedModel inputs by name

    @tf.function(input_signature=specs)
    def serve(*args):
        return serving(**dict(zip(names, args)))

    holder = tf.Module()
    holder.source, holder.serve = model.obj, serve
    tf.saved_model.save(holder, directory, signatures={"serving_default": serve.get_concrete_function()})
    return [o.name for o in model.io.outputs]


def _apply_recipe(converter, recipe: str, calib, input_keys: list[str], int_io: bool, tf) -> None:
    if recipe in ("fp32", "int4-weight"):  # int4-weight: ai-edge-quantizer on the float .tflite
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif recipe == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: (
            dict(zip(input_keys, sample))
            for sample in track(calib.samples(), total=len(calib), description="calibrating")
        )
        if int_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif recipe == "int16x8":  # float I/O; int16 activations, int8 weights
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.representative_dataset = lambda: (
            dict(zip(input_keys, sample))
            for sample in track(calib.samples(), total=len(calib), description="calibrating")
        )


def _selective_int8(converter, saved_model: str, model, float_layers, int_io: bool, tf) -> bytes:
    """int8 with the ops of `float_layers` (Keras layer names) left in float: TF's quantization
    debugger with those ops denylisted by name (their output tensors, read off an fp32 conversion)."""
    if int_io:
        raise UnsupportedError("layers kept in float (accuracy-aware int8) and --int8-io cannot be combined on "
                               "the Keras -> .tflite route", hint="drop --int8-io")
    if model.kind != "keras":
        raise UnsupportedError("keeping layers in float needs a Keras model (.keras/.h5), not a SavedModel")
    fp32 = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serving_default"]).convert()
    names = [n for n, _ in keras_layers(model.obj)]
    nodes = denylisted_nodes(fp32, names, list(float_layers))
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset, debug_options=options)
    return debugger.get_nondebug_quantized_model()


def _describe(recipe: str, int_io: bool) -> str:
    return {
        "fp32": "float32",
        "fp16": "float16 weights",
        "dynamic-int8": "dynamic-range int8 weights",
        "int8": "full-integer int8, per-channel weights" + (", int8 I/O" if int_io else ", float I/O"),
        "int16x8": "int16 activations, int8 per-channel weights (16x8 ops set), float I/O",
        "int4-weight": f"blockwise-{int4_weight.GROUP} int4 FULLY_CONNECTED weights, dynamic int8 activations "
                       "(ai-edge-quantizer)",
    }[recipe]


def _versions(tf) -> dict[str, str]:
    import keras

    return {"tensorflow": tf.__version__, "keras": keras.__version__}

