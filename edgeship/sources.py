"""Load a model source into an edgeship Model, with its I/O spec and a float reference run.

  path/to/file.py:factory   a callable returning an nn.Module, or (module, example_inputs)
  model.pt2                 written by torch.export.save
  model.keras / model.h5    Keras
  saved_model_dir/          TF SavedModel (holds saved_model.pb)

Frameworks are imported inside the loader that needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeship import savedmodel_fallback
from edgeship.errors import InputError, suggest
from edgeship.loader import load_callable
from edgeship.model import IOSpec, Model, TensorSpec, guess_layout

FRAMEWORKS = ("torch", "keras")
_SHAPE_RE = re.compile(r"^(?P<name>[^=]+)=(?P<dims>\d+(?:x\d+)*)(?::(?P<dtype>\w+))?$")


def parse_input_shape(text: str) -> TensorSpec:
    """'image=1x3x224x224' or 'ids=1x128:int64' -> TensorSpec."""
    m = _SHAPE_RE.match(text.strip())
    if not m:
        raise InputError(
            f"cannot read --input-shape '{text}'", hint="write NAME=1x3x224x224, optionally with :dtype (e.g. :int64)"
        )
    dtype = m.group("dtype") or "float32"
    try:
        np.dtype(dtype)
    except TypeError:
        raise InputError(f"unknown dtype '{dtype}' in --input-shape '{text}'", hint="use float32, int64, ...") from None
    shape = tuple(int(d) for d in m.group("dims").split("x"))
    return TensorSpec(m.group("name"), shape, dtype, guess_layout(shape))


def detect_framework(source: str) -> str:
    path_part = _split_factory(source)[0]
    p = Path(path_part)
    if p.suffix == ".py" or p.suffix in (".pt2",):
        return "torch"
    if p.suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    if p.is_dir() and (p / "saved_model.pb").exists():
        return "keras"
    if p.suffix in (".pt", ".pth"):
        raise InputError(
            f"'{source}' looks like a pickled PyTorch checkpoint, which edgeship does not unpickle",
            hint="export it with torch.export.save to a .pt2, or pass a file.py:factory that builds the module",
        )
    raise InputError(
        f"cannot tell the framework of '{source}'",
        hint="pass file.py:factory or a .pt2 (PyTorch), a .keras/.h5 file or a SavedModel folder (TensorFlow), "
        "or say --framework torch|keras",
    )


def load_model(
    source: str,
    framework: str | None = None,
    input_shapes: list[TensorSpec] | None = None,
    trust_source: bool = False,
) -> Model:
    path_part, factory = _split_factory(source)
    if not Path(path_part).exists():
        raise InputError(f"model source not found: '{path_part}'")
    if framework is not None and framework not in FRAMEWORKS:
        raise InputError(suggest(framework, FRAMEWORKS, "framework"))
    if factory:
        built = _call_factory(Path(path_part), factory)
        if isinstance(built, (str, os.PathLike)):  # a factory that writes or unpacks a model file
            return load_model(str(built), None if framework == "torch" else framework, input_shapes, trust_source)
        if is_keras_model(built):  # saved once to the cache (the .pte route's child reads a file), named as the factory
            loaded = keras_model_as_loaded(built, source, keras_in_cache(built), input_shapes)
            return replace(loaded, name=_model_name(Path(path_part)))
        return _load_torch_factory(source, Path(path_part), factory, input_shapes, built)
    framework = framework or detect_framework(source)
    if framework == "torch":
        if path_part.endswith(".pt2"):
            return _load_pt2(source, Path(path_part), trust_source)
        raise InputError(f"'{source}' is not a PyTorch source", hint="pass file.py:factory or a .pt2 file")
    p = Path(path_part)
    if p.is_dir():
        return _load_savedmodel(source, p, input_shapes)
    if p.suffix in (".keras", ".h5", ".hdf5"):
        return _load_keras(source, p, input_shapes)
    raise InputError(f"'{source}' is not a Keras/TensorFlow source", hint="pass a .keras/.h5 file or a SavedModel")


def source_sha256(path: str) -> str:
    """Hash of a file, or of every file under a directory (names and bytes, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _split_factory(source: str) -> tuple[str, str | None]:
    head, sep, tail = source.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        return head, tail
    return source, None


def _model_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem if path.is_file() else path.name) or "model"


# ---------------------------------------------------------------------------------------------
# PyTorch


def _torch_runner(module):
    import torch

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        return [t.detach().cpu().numpy() for t in flatten_outputs(out)]

    return run


def flatten_outputs(out) -> list:
    """A forward's outputs as a flat list: tuples and lists in order, dicts in insertion order,
    nested containers depth first (torch.export's pytree order, which every artifact keeps)."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten_outputs(o)]
    if isinstance(out, dict):
        return [t for k in out for t in flatten_outputs(out[k])]
    return [out]


def output_names(out, prefix: str = "") -> list[str]:
    """Names for flatten_outputs(out), in its order: a dict's keys (nested: 'key_0', 'key_sub'),
    else output_0..output_M, or 'output' for a single tensor."""
    if isinstance(out, dict):
        return [n for k in out for n in output_names(out[k], f"{prefix}_{k}" if prefix else str(k))]
    if isinstance(out, (tuple, list)):
        if not prefix:
            flat = flatten_outputs(out)
            if not any(isinstance(o, dict) for o in out):
                return ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]
        return [n for i, o in enumerate(out) for n in output_names(o, f"{prefix or 'output'}_{i}")]
    return [prefix or "output"]


def _output_specs(run, example_inputs, names: list[str] | None = None) -> list[TensorSpec]:
    outs = run(example_inputs)
    if names is None or len(names) != len(outs) or len(set(names)) != len(names):
        names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    return [TensorSpec(n, tuple(o.shape), str(o.dtype), guess_layout(o.shape)) for n, o in zip(names, outs)]


def _torch_output_names(module, examples) -> list[str]:
    import torch

    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(x)) for x in examples])
    return output_names(out)


def is_keras_model(obj) -> bool:
    return any(c.__name__ in ("Model", "Functional", "Sequential") and c.__module__.startswith("keras")
               for c in type(obj).__mro__)


def keras_in_cache(keras_model) -> Path:
    """The model as a .keras file in edgeship's cache, named by its architecture and weights, so the same
    model is saved once, exports of it are up to date, and the .pte route's child can load it."""
    from edgeship.runtime.rootfs import cache_root

    h = hashlib.sha256(keras_model.to_json().encode())
    for w in keras_model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    path = cache_root() / "models" / f"{keras_model.name}-{h.hexdigest()[:16]}.keras"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.partial.keras")
        keras_model.save(tmp)
        tmp.replace(path)
    return path


def _call_factory(path: Path, factory: str):
    """Import file.py and call its factory: an nn.Module, (module, example_inputs), a keras.Model, or the
    path of a model file it wrote (.keras, .h5, a SavedModel folder, .pt2), which is then loaded as such."""
    fn = load_callable(path, factory, "model")
    try:
        return fn()
    except Exception as e:
        raise InputError(f"'{path}:{factory}' failed: {type(e).__name__}: {e}") from None


def _load_torch_factory(source, path: Path, factory: str, input_shapes, built) -> Model:
    import torch

    example = None
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        built, example = built
    if not isinstance(built, torch.nn.Module):
        raise InputError(f"'{source}' returned {type(built).__name__}, not an nn.Module or (module, example_inputs)")
    return model_from_torch(built, example, _model_name(path), source, str(path), input_shapes)


def model_from_torch(built, example, name: str, source: str, source_path: str | None, input_shapes=None) -> Model:
    """A Model for an nn.Module (from a factory file, or in memory through the Python API) and its
    example inputs (a tensor, a sequence of them, or None with input_shapes)."""
    import torch

    if example is not None:
        example = [example] if isinstance(example, torch.Tensor) else list(example)
        example = [t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)) for t in example]
    built.eval()
    names = [
        p.name for p in inspect.signature(built.forward).parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD,)
    ]
    if input_shapes:
        specs = list(input_shapes)
    elif example is not None:
        specs = [
            TensorSpec(names[i] if i < len(names) else f"input_{i}", tuple(t.shape), str(t.numpy().dtype),
                       guess_layout(tuple(t.shape)))
            for i, t in enumerate(example)
        ]
    else:
        raise InputError(
            f"'{source}' returned a module without example inputs, so its input shape is unknown",
            hint="pass --input-shape NAME=1x3x224x224, or return (module, example_inputs) from the factory",
        )
    examples = [np.zeros(s.shape, s.dtype) for s in specs] if example is None else [t.numpy() for t in example]
    run = _torch_runner(built)
    try:
        outputs = _output_specs(run, examples, _torch_output_names(built, examples))
    except Exception as e:
        raise InputError(
            f"'{source}' failed on inputs of shape {[list(s.shape) for s in specs]}: {type(e).__name__}: {e}",
            hint="check --input-shape",
        ) from None
    return Model(name, "torch", "torch-module", source, source_path, built, IOSpec(specs, outputs), run, examples)


@contextlib.contextmanager
def _no_arbitrary_unpickling():
    """torch.export.load unpickles some weights and constants with weights_only=False, and
    PyTorch warns never to load an untrusted .pt2. Inside this block torch.load is forced to
    weights_only=True (plain tensors and containers only) and raw pickle loads are refused."""
    import pickle
    from unittest import mock

    import torch

    real_load = torch.load

    def weights_only_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(f, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("the file stores a pickled Python object")

    with mock.patch.object(torch, "load", weights_only_load), mock.patch.object(pickle, "loads", refuse), \
            mock.patch.object(torch._C, "_pickle_load_obj", refuse, create=True):
        yield


def _load_pt2(source, path: Path, trust_source: bool = False) -> Model:
    import torch

    try:
        with contextlib.nullcontext() if trust_source else _no_arbitrary_unpickling():
            ep = torch.export.load(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        import pickle

        # torch's refusal reads "Weights only load failed ...": the error's type says it, not its words
        if not trust_source and (isinstance(e, pickle.UnpicklingError) or "pickle" in first.lower()
                                 or "weights_only" in first.lower()):
            raise InputError(
                f"'{path}' holds pickled Python objects, which edgeship does not unpickle by default ({first})",
                hint="if you trust the file and its author, pass --trust-source",
            ) from None
        raise InputError(f"cannot load '{path}' with torch.export.load: {type(e).__name__}: {first}") from None
    module = ep.module()
    example_args = (ep.example_inputs or ((), {}))[0]
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if not example_args:
        metas = [n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder" and n.name in names]
        example_args = tuple(torch.zeros(tuple(m.shape), dtype=m.dtype) for m in metas)
    specs = [
        TensorSpec(n, tuple(t.shape), str(t.numpy().dtype), guess_layout(tuple(t.shape)))
        for n, t in zip(names, example_args)
    ]
    examples = [t.numpy() for t in example_args]
    run = batch_one(_torch_runner(module), [s.shape for s in specs])
    return Model(_model_name(path), "torch", "torch-exported", source, str(path), ep,
                 IOSpec(specs, _output_specs(run, examples, _torch_output_names(module, examples))), run, examples)


def batch_one(run, shapes=None):
    """Exported programs have static shapes: run a batch one sample at a time. Inputs already in
    the program's full `shapes` (one sample of an input taken whole, e.g. (6, 4)) run as they are."""
    full = None if shapes is None else [tuple(int(d) for d in sh) for sh in shapes]

    def run_per_sample(inputs: list[np.ndarray]) -> list[np.ndarray]:
        if inputs[0].shape[0] == 1 or (full is not None and [tuple(x.shape) for x in inputs] == full):
            return run(inputs)
        outs = [run([x[i : i + 1] for x in inputs]) for i in range(inputs[0].shape[0])]
        return [np.concatenate(parts) for parts in zip(*outs)]

    return run_per_sample


# ---------------------------------------------------------------------------------------------
# Keras / TensorFlow


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _load_keras(source, path: Path, input_shapes) -> Model:
    _quiet_tf()
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as e:
        raise InputError(f"cannot load '{path}' with Keras: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return keras_model_as_loaded(model, source, path, input_shapes)


def keras_model_as_loaded(model, source: str, path: Path, input_shapes=None) -> Model:
    """A Model for a keras.Model in memory (built by a factory, or given to the Python API), with `path` (its copy
    in the cache) as its file: used as it is, not read back from that file, so a custom layer that Keras cannot
    deserialize without its class (defined in the factory, not registered) still exports."""
    specs = []
    for i, t in enumerate(model.inputs):
        name = getattr(t, "name", None) or f"input_{i}"
        shape = tuple(1 if d is None else int(d) for d in t.shape)
        specs.append(TensorSpec(name, shape, _dtype_name(t.dtype), guess_layout(shape)))
    if input_shapes:
        specs = _override(specs, input_shapes)
    examples = [np.zeros(s.shape, s.dtype) for s in specs]

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = model(inputs if len(inputs) > 1 else inputs[0], training=False)
        return [np.asarray(o) for o in flatten_outputs(out)]

    outputs = _output_specs(run, examples)
    out_names = [_keras_output_name(t) for t in model.outputs]
    for spec, name in zip(outputs, out_names):
        spec.name = name or spec.name
    return Model(_model_name(path), "keras", "keras", source, str(path), model, IOSpec(specs, outputs), run, examples)


def _keras_output_name(tensor) -> str | None:
    """The producing layer's name ('dense_1'), which users recognise, over 'keras_tensor_26'."""
    history = getattr(tensor, "_keras_history", None)
    op = getattr(history, "operation", None)
    return getattr(op, "name", None) or getattr(tensor, "name", None)


def _load_savedmodel(source, path: Path, input_shapes) -> Model:
    _quiet_tf()
    import tensorflow as tf

    loader = None
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as e:  # e.g. a Keras-2 object graph with optimizer slots: try the serving signature alone
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        obj, loader = savedmodel_fallback.load_signature(path, reason, tf)
    sigs = getattr(obj, "signatures", {})
    if "serving_default" not in sigs:
        raise InputError(f"SavedModel '{path}' has no 'serving_default' signature", hint="export it with one")
    fn = sigs["serving_default"]
    in_specs = fn.structured_input_signature[1]
    names = sorted(in_specs)
    specs = []
    for n in names:
        t = in_specs[n]
        shape = tuple(1 if d is None else int(d) for d in t.shape)
        specs.append(TensorSpec(n, shape, t.dtype.name, guess_layout(shape)))
    if input_shapes:
        specs = _override(specs, input_shapes)
    out_names = sorted(fn.structured_outputs)

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        res = fn(**{n: tf.constant(x) for n, x in zip(names, inputs)})
        return [res[k].numpy() for k in out_names]

    if any(t.shape[0] is not None for t in in_specs.values()):
        run = batch_one(run, [s.shape for s in specs])
    examples = [np.zeros(s.shape, s.dtype) for s in specs]
    outputs = _output_specs(run, examples)
    for spec, name in zip(outputs, out_names):
        spec.name = name
    return Model(_model_name(path), "keras", "savedmodel", source, str(path), obj, IOSpec(specs, outputs), run,
                 examples, loader=loader)


def _override(specs: list[TensorSpec], given: list[TensorSpec]) -> list[TensorSpec]:
    by_name = {s.name: s for s in specs}
    for g in given:
        if g.name not in by_name:
            raise InputError(suggest(g.name, by_name, "input name") + " (from --input-shape)")
        by_name[g.name] = g
    return [by_name[s.name] for s in specs]


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)
