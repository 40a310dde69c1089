"""Skip work that is already done: an export whose inputs match an existing bundle's.

The manifest records `inputs_sha256`, a hash of everything an export's bytes depend on: the
source file(s), the data files named by --calib/--eval, the options (targets, recipes, sample
counts, preprocessing...), and the versions of edgeship and of every converter package. When a
new export asks for the same, the bundle is already what it would write (exports are
byte-reproducible: tests/test_reproducible.py) and `export` says so instead of redoing minutes
of conversion. Computed without importing any framework.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path

from edgeship.hashing import sha256_file
from edgeship.version import __version__

# Packages whose version changes what an export writes.
TOOL_PACKAGES = ("torch", "executorch", "torchao", "litert-torch", "tensorflow", "tensorflow-cpu", "keras",
                 "ai-edge-litert", "onnx", "onnxruntime", "onnxscript", "tf2onnx", "numpy")
# Request fields that do not change the bundle's content.
# Not ignored: jobs. A forked format computes with one torch thread, and an int8 calibration on one thread can
# round differently from one on all cores (MobileNetV2: two of six artifacts differed in their bytes).
IGNORED_FIELDS = {"out", "force", "verbose", "trust_source", "reuse_up_to_date", "model"}  # model: model_sha256


def _hash_path(h, path: Path) -> None:
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())


def _spec_files(spec: str | None) -> list[Path]:
    """The files a source or data spec reads: 'x.py:fn' -> x.py; a path -> itself; 'digits' -> none."""
    if not spec:
        return []
    head, sep, tail = spec.rpartition(":")
    path = Path(head) if sep and head.endswith(".py") else Path(spec)
    return [path] if path.exists() else []


def _plain(value):
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    return value


def inputs_sha256(req) -> str:
    h = hashlib.sha256()
    fields = {k: _plain(v) for k, v in vars(req).items() if k not in IGNORED_FIELDS}
    h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for spec in (req.source, req.calib, req.eval):
        for path in _spec_files(spec):
            _hash_path(h, path)
    versions = {"edgeship": __version__}
    for pkg in TOOL_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    h.update(json.dumps(versions, sort_keys=True).encode())
    return h.hexdigest()


def up_to_date(out: Path, key: str) -> dict | None:
    """The existing bundle's manifest when it was written from the same inputs and is intact."""
    manifest_path = Path(out) / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("inputs_sha256") != key:
        return None
    if manifest.get("failed_artifacts"):
        return None  # an artifact failed its smoke run: try again

    golden = manifest.get("golden") or {}
    for rec in [*manifest.get("artifacts", []), golden]:
        path = Path(out) / rec.get("path", "")
        if not path.is_file() or sha256_file(path) != rec.get("sha256"):
            return None  # an artifact changed or went missing: not up to date
    return manifest
