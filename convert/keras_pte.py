"""Keras -> ExecuTorch .pte, converted in a child process under Keras' torch backend.

Keras chooses its backend once per process, and edgeship's main process may already hold Keras
with TensorFlow (it loaded the model for the float reference). So `convert` writes a job folder
(the job, example inputs, calibration data) and runs `python -m edgeship.convert.keras_pte JOB`
with KERAS_BACKEND=torch. The child loads the .keras/.h5 file as a torch module, exports it with
torch.export, cleans the graph (convert/torch_passes.py) and lowers it with the torch route's
`export_pte`. It answers with result.json; its own output goes to a log, shown with --verbose.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edgeship.children import die_with_parent
from edgeship.convert.base import ConvertOptions, ConvertResult, converter_message
from edgeship.convert.base import ConvertOptions as Options
from edgeship.convert.layers import LayerError
from edgeship.convert.torch_common import exported_program, quiet, shared_provenance, to_tensors
from edgeship.convert.torch_pte import export_pte
from edgeship.convert.xnnpack_quant_patterns import pad_after_permute
from edgeship.data import Dataset
from edgeship.errors import ConversionError, EdgeshipError, InputError, UnsupportedError, error_line
from edgeship.loader import load_callable
from edgeship.model import IOSpec
from edgeship.quantize.recipes import get_recipe

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SOURCE_STEP = "Keras (torch backend) -> torch.export -> graph passes"
LAYER_PREFIX = "layers."  # where the per-layer wrappers sit in the exported module tree
# What the child runs to rank layers: named, not imported (quantize/ stands above convert/).
RANKER = "edgeship.quantize.layer_error:pte_layer_errors"


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind == "savedmodel":
        raise UnsupportedError(
            "SavedModel -> pte is not supported: the Keras -> pte route re-loads the model with Keras' "
            "torch backend, which reads .keras (or .h5) files, not TensorFlow graphs; a SavedModel exports to tflite "
            "and onnx",
            hint="pass --to tflite,onnx; for a .pte, save the Keras model with model.save('model.keras') and export "
            "that",
        )
    path = Path(model.source_path)
    if model.kind != "keras" or path.suffix not in KERAS_SUFFIXES:
        raise UnsupportedError(
            f"the Keras -> pte route needs a .keras or .h5 file, got '{model.source_path}' ({model.kind})",
            hint="save the model with model.save('model.keras')",
        )
    with tempfile.TemporaryDirectory(prefix="edgeship-keras-pte-") as tmp:
        job_dir = Path(tmp)
        _write_job(job_dir, model, recipe, calib, Path(out_path), options)
        return ConvertResult(**_run_child(job_dir, options.verbose)["result"])


def layer_errors(model, calib, feeds: list[list[np.ndarray]], float_layers=(), verbose: bool = False,
                 ranker: str = RANKER):
    """Per-layer error of this route's int8 graph, simulated on the host in the torch-backend child
    by RANKER ('module:function', called with the program, as quantize/layer_error.py's
    pte_layer_errors is): [LayerError], worst first. Layers are Keras layer names."""
    with tempfile.TemporaryDirectory(prefix="edgeship-keras-pte-") as tmp:
        job_dir = Path(tmp)
        options = ConvertOptions(float_layers=tuple(float_layers), verbose=verbose)
        _write_job(job_dir, model, get_recipe("int8"), calib, job_dir / "unused.pte", options, mode="layer_errors")
        job = json.loads((job_dir / "job.json").read_text())
        (job_dir / "job.json").write_text(json.dumps({**job, "ranker": ranker}))
        np.savez(job_dir / "feeds.npz", **{f"input_{i}": np.concatenate(a) for i, a in enumerate(zip(*feeds))})
        return [LayerError(**row) for row in _run_child(job_dir, verbose)["rows"]]


def _run_child(job_dir: Path, verbose: bool) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "edgeship.convert.keras_pte", str(job_dir)]
    with open(job_dir / "child.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent())
    log_text = (job_dir / "child.log").read_text(errors="replace")
    if verbose:
        sys.stderr.write(log_text)
    return _read_answer(job_dir / "result.json", proc.returncode, log_text)


# ---------------------------------------------------------------------------------------------
# Parent side: job folder and answer


def _factory_of(source: str) -> str | None:
    """'file.py:fn' (absolute) where the model came from a factory file, else None."""
    path, sep, name = (source or "").rpartition(":")
    if not sep or not path.endswith(".py") or not Path(path).is_file() or not name.isidentifier():
        return None
    return f"{Path(path).resolve()}:{name}"


def _write_job(job_dir: Path, model, recipe, calib, out_path: Path, options: ConvertOptions,
               mode: str = "convert") -> None:
    examples = model.example_inputs or [np.zeros(s.shape, s.dtype) for s in model.io.inputs]
    np.savez(job_dir / "examples.npz", **{f"input_{i}": a for i, a in enumerate(examples)})
    if calib is not None:
        np.savez(job_dir / "calib.npz", **{f"input_{i}": a for i, a in enumerate(calib.arrays)})
    job = {
        "mode": mode,
        "model_path": str(Path(model.source_path).resolve()),
        "factory": _factory_of(model.source),
        "io": model.io.to_dict(),
        "recipe": recipe.name,
        "out_path": str(Path(out_path).resolve()),
        "int8_io": options.int8_io,
        "float_layers": list(options.float_layers),
        "calibration": options.calibration,
        "calib_name": None if calib is None else calib.name,
    }
    (job_dir / "job.json").write_text(json.dumps(job))


def _child_model(job: dict, keras):
    """The Keras model under the torch backend: read from its .keras file; where Keras cannot deserialize it (a
    custom layer class defined in the factory, not registered), built again by the factory (`file.py:fn`) and
    given the file's weights."""
    try:
        return keras.models.load_model(job["model_path"], compile=False)
    except Exception as e:
        first = error_line(e)
    factory = job.get("factory")
    if factory:
        path, _, name = factory.rpartition(":")
        try:
            built = load_callable(Path(path), name, "model")()
            built.load_weights(job["model_path"])
            return built
        except Exception as e:  # noqa: BLE001 - the factory's own failure, said with the file's
            first += f"; rebuilt by '{factory}': {error_line(e)}"
    raise ConversionError(f"Keras (torch backend) cannot load '{job['model_path']}': {first}",
                          hint="register custom layers with @keras.saving.register_keras_serializable and give them "
                               "get_config")


def _read_answer(result_path: Path, returncode: int, log_text: str) -> dict:
    if not result_path.exists():
        lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
        how = f"died with signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise ConversionError(
            f"the Keras -> pte child process {how}" + (f": {converter_message(lines[-1])}" if lines else ""),
            hint="run with --verbose to see its output",
        )
    answer = json.loads(result_path.read_text())
    if not answer["ok"]:
        cls = {"UnsupportedError": UnsupportedError, "InputError": InputError}.get(answer["type"], ConversionError)
        raise cls(answer["message"], hint=answer.get("hint"))
    return answer


# ---------------------------------------------------------------------------------------------
# Child side


def clean_keras_graph(gm) -> dict[str, int]:
    """The passes that make a Keras (torch backend) graph lower like a native PyTorch one."""
    from edgeship.convert import torch_passes as p  # these import torch: heavy modules, loaded where used
    from edgeship.convert.keras_graph_passes import clean_layout_and_batchnorm

    return {
        "identity conversions removed": p.remove_identity_conversions(gm),
        "channels_last hints stripped": p.strip_channels_last_hints(gm),
        "constant layout ops folded": p.fold_constant_layout_ops(gm),
        "matmul+add -> linear": p.matmul_add_to_linear(gm),
        **clean_layout_and_batchnorm(gm),
        "input pads moved behind the layout permute": pad_after_permute(gm),
    }


def _in_child(job_dir: Path) -> dict:
    """The child's work for job.json's mode: 'convert' (write the .pte) or 'layer_errors'."""
    if os.environ.get("KERAS_BACKEND") != "torch":
        raise ConversionError("internal: the Keras -> pte child must run with KERAS_BACKEND=torch")
    import keras


    job = json.loads((job_dir / "job.json").read_text())
    io = IOSpec.from_dict(job["io"])
    with np.load(job_dir / "examples.npz") as z:
        examples = to_tensors([z[f"input_{i}"] for i in range(len(io.inputs))])
    calib = None
    if (job_dir / "calib.npz").exists():
        with np.load(job_dir / "calib.npz") as z:
            calib = Dataset(job["calib_name"], [z[f"input_{i}"] for i in range(len(io.inputs))], io.inputs)
    keras_model = _child_model(job, keras)
    module, named = _as_torch_module(keras_model, len(examples))
    float_layers = tuple(job.get("float_layers") or ())
    unknown = [n for n in float_layers if n not in named]
    if unknown:
        weighted = [layer.name for layer in keras_model.layers if layer.name in named and layer.weights]
        raise InputError(f"layer(s) {', '.join(unknown)} cannot be kept in float on the Keras -> pte route",
                         hint=f"layers with weights it can keep in float: "
                              f"{', '.join(weighted) or 'none (not a Functional or Sequential model)'}")
    graph = exported_program(module, examples, "of the Keras model", hint=None).module()
    with quiet():
        changes = clean_keras_graph(graph)
    program = exported_program(graph, examples, "of the Keras model after the graph passes", hint=None)
    done = ", ".join(f"{k}: {v}" for k, v in changes.items() if v)
    print(f"graph passes: {done or 'nothing to change'}", flush=True)
    masked = [n for n in masked_attention_layers(program.graph_module, named) if n not in float_layers]
    if masked and job["recipe"] == "int8":
        float_layers += tuple(masked)
        print(f"kept float (masked attention): {', '.join(masked)}", flush=True)
    else:
        masked = []
    if job["mode"] == "layer_errors":
        with np.load(job_dir / "feeds.npz") as z:
            stacked = [z[f"input_{i}"] for i in range(len(io.inputs))]
        feeds = [[a[i : i + 1] for a in stacked] for i in range(len(stacked[0]))]
        module_name, _, fn = job["ranker"].partition(":")
        rank = getattr(importlib.import_module(module_name), fn)
        rows = rank(program, examples, calib, feeds, float_layers, "pte", LAYER_PREFIX)
        return {"rows": [asdict(replace(r, kind=named.get(r.name, r.kind))) for r in rows]}
    result = export_pte(program, get_recipe(job["recipe"]), examples, calib, Path(job["out_path"]),
                        Options(int8_io=job["int8_io"], float_layers=float_layers,
                                calibration=job.get("calibration")), source=SOURCE_STEP,
                        tools={"keras": keras.__version__}, layer_prefix=LAYER_PREFIX)
    if masked:
        result.warnings.insert(0, "kept float: " + ", ".join(f"{n} ({named[n]}: {MASKED_WHY})" for n in masked))
    return {"result": asdict(result)}


ATTENTION_OPS = ("scaled_dot_product_attention", "softmax")
MASKED_WHY = ("masked attention: the mask's bias (-3e4 after the XNNPACK passes) shares one int8 scale with the "
              "scores, so every score rounds to one code; langid_keras int8 top-1 58.7% -> 77.3% kept float, "
              "78.0% float")


def masked_attention_layers(graph_module, named: dict[str, str]) -> list[str]:
    """The Keras layers (names in `named`, in graph order) that compute a softmax or attention over
    masked scores: a softmax or scaled_dot_product_attention node and a boolean tensor (the mask)
    under the same layer, found by what the layer computes, not by its class or name (Keras'
    MultiHeadAttention fed by Embedding(mask_zero=True), its Attention layers, a custom block).
    The XNNPACK passes turn the mask into a finite bias added to the scores (-3e4,
    xnnpack_decompose.masked_softmax) and PT2E then quantizes scores and bias as one int8 tensor:
    step ~240, every real score the same code, attention a plain average (langid_keras: int8
    top-1 58.7% against 78.0% float on 150 held-out strings; the GRU kept float instead: 57.3%).
    Kept float by default on the int8 recipe; said in the artifact's warnings."""
    import torch

    from edgeship.convert.layers import node_layer

    attention: dict[str, bool] = {}
    masks: set[str] = set()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        layer = node_layer(node, LAYER_PREFIX)
        if layer is None or layer[0] not in named:
            continue
        name = layer[0]
        attention.setdefault(name, False)
        target = str(getattr(node.target, "__name__", node.target))
        if any(op in target for op in ATTENTION_OPS):
            attention[name] = True
        if getattr(node.meta.get("val"), "dtype", None) == torch.bool:
            masks.add(name)
    return [name for name, has in attention.items() if has and name in masks]


def _as_torch_module(keras_model, n_inputs: int):
    """(torch module, {layer name: class name}). Keras models are torch modules under the torch
    backend; the wrapper fixes the calling convention (one tensor, or a list for several inputs)
    and inference mode. For Functional and Sequential models it also runs each top-level layer
    through a torch module of its own, held under `layers.<name>`: Keras layers do not go through
    nn.Module.__call__, so without this torch.export's nn_module_stack names no Keras layer, and
    neither the quantizer's per-layer filter nor the per-layer error report could find one."""
    import keras
    import torch

    whole_model, layer_call, by_layer = _torch_module_classes()
    graph = keras_model._functional if isinstance(keras_model, keras.Sequential) else keras_model
    try:  # Keras' own per-node call wrapper (training flag and the other call-context arguments)
        from keras.src.models.functional import operation_fn  # noqa: F401
    except ImportError:  # another Keras: the model converts whole, without per-layer names
        graph = None
    if not isinstance(graph, keras.Model) or not hasattr(graph, "_run_through_graph"):
        return whole_model(keras_model, n_inputs).eval(), {}
    wrappers = torch.nn.ModuleDict()
    for layer in keras_model.layers:
        try:
            wrappers[layer.name] = layer_call()
        except (KeyError, TypeError):  # a name a torch module cannot be registered under ('a.b', 'keys')
            continue
    named = {layer.name: type(layer).__name__ for layer in keras_model.layers if layer.name in wrappers}
    return by_layer(keras_model, graph, wrappers, n_inputs).eval(), named


# Layers that act on the last axis alone: TimeDistributed(layer) is the layer itself on the whole sequence
_LAST_AXIS = ("Dense", "Activation", "Dropout", "ReLU", "LeakyReLU", "ELU", "Softmax", "LayerNormalization")


def per_step_layer(operation):
    """The layer a TimeDistributed wraps, where calling it on the whole (batch, time, ...) tensor computes
    the same (a Dense, an activation, a last-axis LayerNormalization or Softmax); None otherwise. Under
    the torch backend TimeDistributed slices the sequence and runs the layer once per step: a 50-step
    TimeDistributed(Dense) became 50 slices, 50 linears and a stack in the .pte."""
    inner = getattr(operation, "layer", None)
    if type(operation).__name__ != "TimeDistributed" or type(inner).__name__ not in _LAST_AXIS:
        return None
    axis = getattr(inner, "axis", -1)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    try:
        rank = len(operation.input.shape)
    except (AttributeError, ValueError):  # called on several inputs: only axis -1 is certain
        rank = None
    if any(a != -1 and (rank is None or a != rank - 2) for a in axes):  # rank - 2: a step's last axis
        return None
    return inner


def _torch_module_classes():
    import torch

    class WholeModel(torch.nn.Module):
        def __init__(self, keras_model, n_inputs: int):
            super().__init__()
            self.keras_model, self.n_inputs = keras_model, n_inputs

        def forward(self, *inputs):
            return self.keras_model(inputs[0] if self.n_inputs == 1 else list(inputs), training=False)

    class LayerCall(torch.nn.Module):
        """One Keras layer's call, so that torch.export records it under this module's name."""

        def forward(self, call, *args, **kwargs):
            return call(*args, **kwargs)

    class ByLayer(torch.nn.Module):
        def __init__(self, keras_model, graph, layers, n_inputs: int):
            super().__init__()
            self.keras_model, self.layers, self.n_inputs = keras_model, layers, n_inputs
            self._graph = [graph]  # a list: not registered twice as a submodule

        def forward(self, *inputs):
            from keras.src.models.functional import operation_fn

            graph = self._graph[0]

            def call_of(operation):
                inner = per_step_layer(operation)
                call = operation_fn(inner or operation, training=False)
                if inner is not None:  # the sequence's mask is TimeDistributed's to pass on, not the layer's
                    whole = call
                    call = lambda *args, **kwargs: whole(*args, **{k: v for k, v in kwargs.items() if k != "mask"})  # noqa: E731
                wrapper = self.layers[operation.name] if operation.name in self.layers else None
                if wrapper is None:
                    return call
                return lambda *args, **kwargs: wrapper(call, *args, **kwargs)

            x = graph._standardize_inputs(inputs[0] if self.n_inputs == 1 else list(inputs))
            outputs = graph._run_through_graph(x, operation_fn=call_of)
            return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs

    return WholeModel, LayerCall, ByLayer


def main(argv: list[str] | None = None) -> int:
    import traceback

    job_dir = Path((argv or sys.argv[1:])[0])
    try:
        with shared_provenance():  # torch.fx's provenance records shared, not deep-copied (torch_common.py)
            answer = {"ok": True, **_in_child(job_dir)}
    except EdgeshipError as e:
        answer = {"ok": False, "type": type(e).__name__, "message": e.message, "hint": e.hint}
    except Exception as e:  # a bug or a converter's surprise: one line back, the traceback in the log

        traceback.print_exc()
        answer = {"ok": False, "type": "ConversionError",
                  "message": converter_message(f"{type(e).__name__}: {error_line(e)}")}
    (job_dir / "result.json").write_text(json.dumps(answer))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
