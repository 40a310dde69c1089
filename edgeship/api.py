"""The Python API: what the CLI does, from a notebook or a script, on models held in memory.

    import edgeship

    bundle = edgeship.export(module, example_inputs=(x,), to=("tflite", "pte"), quant=("fp32", "int8"),
                             calib="digits:train", eval="digits:test", out="bundles/net")
    bundle.manifest, bundle.artifacts          # manifest.json, and one record per artifact
    result = bundle.validate(device="local")   # the records `edgeship validate --json` writes
    result.ok, result.records, result.context
    edgeship.validate("bundles/net/net.int8.tflite", device="emu:rpi4")
    edgeship.check("edgeship.toml").exit_code

A model is an in-memory `torch.nn.Module` (give `example_inputs`), a `keras.Model`, or any source
string the CLI takes (`file.py:factory`, `.pt2`, `.keras`, `.h5`, a SavedModel folder). Data
(`calib`, `eval`, `data`) is any data string the CLI takes, or arrays: one array (one input), a
list of arrays in input order, a dict by input name, or a tuple `(inputs, labels)`. Errors are the CLI's
exception family (`edgeship.errors`): InputError, UnsupportedError, ConversionError, CheckFailed,
DeviceError, each with `.message`, `.hint` and `.exit_code`.

Importing edgeship imports no framework: torch, TensorFlow and the runtimes load when a call needs them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeship.bundle import read_bundle
from edgeship.checking import CheckOptions, CheckOutcome, run_check
from edgeship.errors import InputError
from edgeship.model import Model
from edgeship.pipeline import ExportRequest, parse_targets
from edgeship.pipeline import export as run_export
from edgeship.runtime.rootfs import cache_root
from edgeship.sources import is_keras_model, keras_in_cache, keras_model_as_loaded, model_from_torch
from edgeship.status import Status
from edgeship.validation import ValidateRequest
from edgeship.validation import validate as run_validate


@dataclass
class ValidateResult:
    """The records `edgeship validate --json` writes: one per artifact, and the run's context."""

    records: list[dict]
    context: dict

    @property
    def ok(self) -> bool:
        """Every artifact passed (or ran, where there was nothing to compare it with)."""
        return bool(self.records) and all(r["status"] in (Status.PASS, Status.RAN) for r in self.records)

    def by_artifact(self) -> dict[str, dict]:
        return {r["artifact"]: r for r in self.records}


@dataclass
class Bundle:
    """An exported bundle: its folder, manifest.json and artifact records."""

    path: Path
    manifest: dict
    model: Model | None = field(default=None, repr=False)  # the in-memory model it came from, if any

    @property
    def artifacts(self) -> list[dict]:
        return list(self.manifest.get("artifacts", []))

    def artifact_path(self, fmt: str, recipe: str) -> Path:
        """bundle.artifact_path("tflite", "int8") -> the file of that format and recipe."""
        for a in self.artifacts:
            if a["format"] == fmt and a["recipe"] == recipe:
                return self.path / a["path"]
        have = ", ".join(f"{a['format']}:{a['recipe']}" for a in self.artifacts)
        raise InputError(f"bundle '{self.path}' has no {fmt}:{recipe} artifact", hint=f"it has {have}")

    def validate(self, device: str = "local", data: Any = None, **options) -> ValidateResult:
        """Every artifact on DEVICE against the golden vectors, or against the float model re-run
        over DATA. Options are ValidateRequest's: threads, warmup, runs, timeout, max_drop, min_cosine."""
        return validate(self.path, device=device, data=data, model=self.model, **options)


def export(model: Any, example_inputs: Sequence | Any = None, *, to: Sequence[str] | str = ("tflite", "pte"),
           quant: Sequence[str] | str = ("fp32", "int8"), calib: Any = None, eval: Any = None,
           out: str | Path, force: bool = False, name: str | None = None, **options) -> Bundle:
    """Export MODEL to one artifact per (format, recipe) in the bundle folder OUT; returns the Bundle.

    Options are the CLI's export options by their ExportRequest names: int8_io, calib_samples,
    calib_min, golden_samples, reference_device, max_drop, metric, input_shapes, image, verbose."""
    req = ExportRequest(source="", out=Path(out), targets=parse_targets(_csv(to)), recipes=_csv(quant),
                        calib=_data_spec(calib), eval=_data_spec(eval), force=force, name=name)
    unknown = sorted(set(options) - set(vars(req)))
    if unknown:
        raise InputError(f"unknown export option(s): {', '.join(unknown)}",
                         hint="options: " + ", ".join(k for k in vars(req) if k not in ("source", "model")))
    req = replace(req, **options)
    loaded = None
    if isinstance(model, (str, Path)):
        req = replace(req, source=str(model))
    elif _is_torch_module(model):
        if example_inputs is None and not req.input_shapes:
            raise InputError("an nn.Module needs example_inputs (a tensor or a tuple of tensors, batch 1)",
                             hint="edgeship.export(module, example_inputs=(torch.randn(1, 3, 224, 224),), ...)")
        label = name or type(model).__name__
        loaded = model_from_torch(model, example_inputs, label, f"python:{type(model).__name__}", None,
                                  req.input_shapes or None)
        req = replace(req, source=loaded.source, model=loaded, model_sha256=_torch_sha256(model))
    elif is_keras_model(model):
        cached = keras_in_cache(model)
        loaded = keras_model_as_loaded(model, str(cached), cached, req.input_shapes or None)
        req = replace(req, source=str(cached), name=name or model.name, model=loaded)
    else:
        raise InputError(f"cannot export a {type(model).__module__}.{type(model).__name__}",
                         hint="pass a torch.nn.Module (with example_inputs), a keras.Model, or a source path "
                              "the CLI takes (file.py:factory, .pt2, .keras, .h5, a SavedModel folder)")
    result = run_export(req)
    return Bundle(Path(result.bundle), result.manifest, loaded)


def validate(path: str | Path, device: str = "local", data: Any = None, *, model: Model | None = None,
             **options) -> ValidateResult:
    """Validate a bundle folder or one artifact on DEVICE, as `edgeship validate` does."""
    req = ValidateRequest(Path(path), _data_spec(data), device)
    unknown = sorted(set(options) - set(vars(req)))
    if unknown:
        raise InputError(f"unknown validate option(s): {', '.join(unknown)}",
                         hint="options: threads, warmup, runs, timeout, max_drop, min_cosine, verbose")
    records, context = run_validate(replace(req, model=model, **options))
    return ValidateResult(records, context)


def check(config: str | Path | None = None, baseline: str | Path | None = None,
          report_dir: str | Path | None = None, skip_export: bool = False, verbose: bool = False) -> CheckOutcome:
    """`edgeship check CONFIG`: export, validate on every device, gate, write the reports.
    Returns the outcome (report, exit_code, report_dir, written files) instead of exiting."""
    return run_check(CheckOptions(_path(config), _path(baseline), _path(report_dir), skip_export, verbose))


def load(path: str | Path) -> Bundle:
    """An existing bundle folder."""
    b = read_bundle(Path(path))
    return Bundle(b.root, b.manifest)


# ---------------------------------------------------------------------------------------------


def _csv(value) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _path(value) -> Path | None:
    return None if value is None else Path(value)


def _is_torch_module(obj) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def _torch_sha256(module) -> str:
    """What the module computes, as far as a hash can tell: its class, its structure and every
    parameter and buffer, bytes included."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}\n{module}".encode())
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _data_spec(data) -> str | None:
    """A data string the CLI takes, or arrays saved once to an .npz in the cache (named by their hash)."""
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, Path):
        return str(data)
    labels = None
    if isinstance(data, tuple):  # (inputs, labels); several inputs come as a list or a dict
        if len(data) != 2:
            raise InputError(f"a tuple of data is (inputs, labels), got {len(data)} items",
                             hint="pass several inputs as a list (input order) or a dict (by input name)")
        data, labels = data
    if isinstance(data, np.ndarray):
        arrays = {"input_0": data}
    elif isinstance(data, dict):
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
    elif isinstance(data, list):
        arrays = {f"input_{i}": np.asarray(a) for i, a in enumerate(data)}
    else:
        raise InputError(f"cannot use a {type(data).__name__} as data",
                         hint="pass a data string (.npz, folder, module.py:fn, digits:train), an array, a list or "
                              "dict of arrays, or (inputs, labels)")
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    h = hashlib.sha256(json.dumps({k: [str(a.dtype), list(a.shape)] for k, a in arrays.items()}).encode())
    for a in arrays.values():
        h.update(np.ascontiguousarray(a).tobytes())
    path = cache_root() / "data" / f"{h.hexdigest()[:20]}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".partial-{os.getpid()}.npz")  # two processes saving at once never share it
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
    return str(path)
