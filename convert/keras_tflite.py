"""Keras / TF SavedModel -> LiteRT .tflite with TensorFlow's TFLiteConverter.

The model is first saved as a SavedModel whose serving signature has static, batch-1 inputs
(Keras' own `model.export`, or a wrapper around the SavedModel's serving function), and that
SavedModel is converted: the path that freezes Keras 3 variables reliably.

  fp32          float32
  fp16          float16 weights (Optimize.DEFAULT + supported_types float16), float compute
  dynamic-int8  int8 weights, activations quantized at run time (Optimize.DEFAULT, no data)
  int8          full-integer: TFLITE_BUILTINS_INT8, per-channel weights (the converter's default),
                activation ranges from the calibration data; float I/O unless options.int8_io

A calibrated conversion (int8, int16x8) runs in a child process (`python -m
edgeship.convert.keras_tflite JOB`): TFLiteConverter's calibrator runs the model in TensorFlow's C++,
and on some graphs it dies of SIGSEGV (TensorFlow 2.21: every Keras GRU tried, whose WHILE loop it
calibrates: Embedding -> GRU -> Dense with and without a mask, a GRU on float rows). A crash there
is then one artifact's failure, in one line, and the export's other artifacts are kept. The child
reads the SavedModel and the calibration samples the parent wrote, prints one line per sample (the
parent's progress bar) and writes the .tflite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeship.children import die_with_parent
from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight
from edgeship.convert import tflite_common as common
from edgeship.convert.base import ConvertOptions, ConvertResult, converter_message
from edgeship.convert.layers import denylisted_nodes, keras_layers, masked_attention
from edgeship.errors import ConversionError, EdgeshipError, InputError, UnsupportedError
from edgeship.quantize.calibration import check_method

CALIBRATED = ("int8", "int16x8")
MASKED_WHY = ("masked attention: the mask's large negative bias shares one int8 scale with the scores, so every "
              "score rounds to one code; langid_keras int8 top-1 42.2% -> 67.2% kept float, 65.6% float")

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
    masked = []
    if recipe.name == "int8" and model.kind == "keras" and not options.float_layers:
        masked = masked_attention(model.obj)
        options = replace(options, float_layers=tuple(masked)) if masked and not int_io else options
    input_keys = [common.arg_name(s.name, i) for i, s in enumerate(model.io.inputs)]
    loops = []
    if (recipe.name in CALIBRATED or options.twin_of in CALIBRATED) and model.kind == "keras":
        twin, loops = unrolled(model.obj)
        model = replace(model, obj=twin)
    with tempfile.TemporaryDirectory(prefix="edgeship-savedmodel-") as tmp:
        with common.converting(f"saving '{model.name}' as a batch-1 SavedModel failed", options.verbose):
            output_keys = _save_static(model, input_keys, tmp, tf)
        what = f"TFLiteConverter could not convert '{model.name}' ({recipe.name})"
        if recipe.name in CALIBRATED and not options.float_layers:
            data = _calibrated_in_child(tmp, recipe.name, calib, input_keys, int_io, what, options.verbose)
        else:
            with common.converting(what, options.verbose):
                converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
                _apply_recipe(converter, recipe.name, _representative(calib, input_keys), int_io, tf)
                if recipe.name == "int8" and options.float_layers:
                    data = _selective_int8(converter, tmp, model, options.float_layers, int_io, tf)
                else:
                    data = converter.convert()
        if recipe.name == "int4-weight":
            with common.converting("ai-edge-quantizer's blockwise int4 failed", options.verbose):
                data, _ = int4_weight.tflite_blockwise(data)
    warnings, delegation = common.finish(data, model, recipe.name, int_io, out_path, input_keys, output_keys,
                                         options.verbose)
    if masked:
        warnings.insert(0, f"left int8 with --int8-io, which cannot keep layers float on this route: "
                           f"{', '.join(masked)} ({MASKED_WHY}); expect lost accuracy, or export without --int8-io"
                        if int_io else f"kept float: {', '.join(masked)} ({MASKED_WHY})")
    if loops:
        warnings.insert(0, f"unrolled for {recipe.name}: {', '.join(loops)} (the time steps as plain ops: TensorFlow's "
                           "converter crashes calibrating a recurrent layer's WHILE loop)")
    kept = f", kept float: {', '.join(options.float_layers)}" if recipe.name == "int8" and options.float_layers else ""
    return ConvertResult(route=f"{ROUTE} [{_describe(recipe.name, int_io)}{kept}]", tools=_versions(tf),
                         delegation=delegation, warnings=warnings)


RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def unrolled(keras_model) -> tuple[object, list[str]]:
    """(the model with its recurrent layers unrolled, their names), or (the model, []) where it has none or
    cannot be cloned (a subclassed model). TensorFlow's int8 calibration dies (SIGSEGV) on the WHILE loop a
    recurrent layer becomes (a Bidirectional(LSTM); a GRU over a padding mask): unrolled (`unroll=True`, the
    input's time axis is static here), the loop is plain ops, which calibrate, convert and delegate.
    Same weights, same function."""
    import keras

    names = []

    def with_unroll(config: dict, name: str) -> None:
        if "unroll" in config and not config["unroll"]:
            config["unroll"] = True
            names.append(name)

    def clone(layer):
        config = layer.get_config()
        with_unroll(config, layer.name)
        for key in ("layer", "backward_layer"):  # Bidirectional (or another wrapper) around a recurrent layer
            inner = config.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
                with_unroll(inner["config"], layer.name)
        return layer.__class__.from_config(config)  # what clone_model does by default, with the config changed

    if not any(type(inner).__name__ in RECURRENT for layer in _all_layers(keras_model)
               for inner in (layer, getattr(layer, "forward_layer", None), getattr(layer, "layer", None))):
        return keras_model, []
    try:  # recursive: a recurrent layer inside a nested Functional or Sequential model is unrolled too
        twin = keras.models.clone_model(keras_model, clone_function=clone, recursive=True)
        twin.set_weights(keras_model.get_weights())
    except Exception:  # noqa: BLE001 - a model Keras cannot clone keeps its loops (and its converter's fate)
        return keras_model, []
    return twin, sorted(set(names))


def _all_layers(keras_model) -> list:
    """Every layer of the model, those of nested models included (depth first)."""
    found = []
    for layer in getattr(keras_model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


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


def _representative(calib, input_keys: list[str]):
    """The converter's representative_dataset over CALIB's samples, with a progress bar (None: no data)."""
    if calib is None:
        return None
    return lambda: (dict(zip(input_keys, sample))
                    for sample in track(calib.samples(), total=len(calib), description="calibrating"))


def _apply_recipe(converter, recipe: str, representative, int_io: bool, tf) -> None:
    if recipe in ("fp32", "int4-weight"):  # int4-weight: ai-edge-quantizer on the float .tflite
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif recipe == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = representative
        if int_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif recipe == "int16x8":  # float I/O; int16 activations, int8 weights
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.representative_dataset = representative


# ---------------------------------------------------------------------------------------------
# The calibrated conversion in a child process


def _calibrated_in_child(saved_model: str, recipe: str, calib, input_keys: list[str], int_io: bool, what: str,
                         verbose: bool) -> bytes:
    """The .tflite bytes of a calibrated conversion, made by a child process (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="edgeship-tflite-calibrated-") as tmp:
        job = Path(tmp)
        samples = list(calib.samples())
        np.savez(job / "calib.npz", **{f"s{i}_{k}": a for i, sample in enumerate(samples)
                                       for k, a in enumerate(sample)})
        (job / "job.json").write_text(json.dumps({"saved_model": saved_model, "recipe": recipe, "what": what,
                                                 "input_keys": input_keys, "int_io": int_io,
                                                 "samples": len(samples)}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
        cmd = [sys.executable, "-m", "edgeship.convert.keras_tflite", str(job)]
        with open(job / "child.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                    preexec_fn=die_with_parent())
            for _ in track(_sample_lines(proc.stdout), total=len(samples), description="calibrating"):
                pass
            rc = proc.wait()
        log_text = (job / "child.log").read_text(errors="replace")
        if verbose:
            sys.stderr.write(log_text)
        out, error = job / "out.tflite", job / "error.json"
        if rc == 0 and out.exists():
            return out.read_bytes()
        if error.exists():
            answer = json.loads(error.read_text())
            raise ConversionError(answer["message"], hint=answer.get("hint"))
        how = (f"crashed ({signal.Signals(-rc).name})" if rc < 0 and -rc in signal.valid_signals()
               else f"exited with code {rc}")
        lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
        raise ConversionError(f"{what}: TensorFlow's converter {how} while calibrating"
                              + (f" ({converter_message(lines[-1])})" if lines else ""),
                              hint="the other artifacts are kept; try another recipe for this one (fp16, "
                                   "dynamic-int8) or another format, and --verbose for the converter's output")


def _sample_lines(stream):
    for line in stream:
        if line.startswith("edgeship-calibration-sample"):
            yield line


def _child(job: Path) -> int:
    spec = json.loads((job / "job.json").read_text())
    keys = spec["input_keys"]
    with np.load(job / "calib.npz") as z:
        samples = [[z[f"s{i}_{k}"] for k in range(len(keys))] for i in range(spec["samples"])]

    progress = os.fdopen(os.dup(1), "w")  # the parent's pipe: `converting` sends fds 1 and 2 to its log

    def representative():
        for sample in samples:
            yield dict(zip(keys, sample))
            progress.write("edgeship-calibration-sample\n")
            progress.flush()

    try:
        with common.converting(spec["what"]):
            import tensorflow as tf

            converter = tf.lite.TFLiteConverter.from_saved_model(spec["saved_model"],
                                                                 signature_keys=["serving_default"])
            _apply_recipe(converter, spec["recipe"], representative, spec["int_io"], tf)
            data = converter.convert()
    except EdgeshipError as e:
        (job / "error.json").write_text(json.dumps({"message": e.message, "hint": e.hint}))
        return 1
    partial = job / "out.tflite.partial"
    partial.write_bytes(data)
    partial.replace(job / "out.tflite")
    return 0


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



def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return _child(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
