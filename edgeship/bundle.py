"""The bundle: artifacts + manifest.json + golden.npz in one directory, written atomically.

A bundle is built in a staging directory beside its destination and renamed into place only
when complete, so an interrupted export leaves nothing half-written, and an existing bundle is
replaced only with --force. A lock file keeps two exports from writing the same destination.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeship import interrupts
from edgeship import labels as labels_mod
from edgeship.errors import ArtifactError, InputError

MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
SCHEMA = "edgeship.manifest/1"


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Golden vectors


@dataclass
class Golden:
    inputs: list[np.ndarray]  # model input order, (N, ...) each
    outputs: list[np.ndarray]  # float reference outputs, (N, ...) each
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def save(self, path: Path) -> None:
        arrays = {f"input_{i}": a for i, a in enumerate(self.inputs)}
        arrays.update({f"output_{i}": a for i, a in enumerate(self.outputs)})
        arrays.update(labels_mod.to_npz(self.labels))  # ragged labels: labels + labels_index (labels.py)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> "Golden":
        try:
            with np.load(path, allow_pickle=False) as z:
                inputs = [z[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in z.files))]
                outputs = [z[f"output_{i}"] for i in range(sum(k.startswith("output_") for k in z.files))]
                labels = labels_mod.from_npz({k: z[k] for k in ("labels", labels_mod.INDEX_KEY) if k in z.files},
                                             str(path))
        except Exception as e:
            raise ArtifactError(f"cannot read golden vectors '{path}': {e}", hint="re-export the bundle") from None
        if not inputs or not outputs:
            raise ArtifactError(f"golden vectors '{path}' hold no inputs or outputs", hint="re-export the bundle")
        return cls(inputs, outputs, labels)


# ---------------------------------------------------------------------------------------------
# Reading a bundle


@dataclass
class Bundle:
    root: Path
    manifest: dict
    artifacts: list[dict] = field(default_factory=list)

    @property
    def golden_path(self) -> Path:
        return self.root / self.manifest.get("golden", {}).get("path", GOLDEN)

    def golden(self) -> Golden:
        return Golden.load(self.golden_path)

    def artifact_path(self, record: dict) -> Path:
        return self.root / record["path"]


def read_bundle(path: Path) -> Bundle:
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.exists():
        raise ArtifactError(f"'{path}' is not a bundle: no {MANIFEST}", hint="pass the --out folder of an export")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"manifest '{mpath}' is not valid JSON ({e})", hint="re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ArtifactError(f"manifest '{mpath}' is not an edgeship manifest (expected schema '{SCHEMA}')")
    return Bundle(path, manifest, list(manifest.get("artifacts", [])))


def find_bundle_of(artifact: Path) -> tuple[Bundle, dict] | None:
    """The bundle holding this artifact file, and its manifest record, if it sits in one."""
    artifact = Path(artifact)
    if not (artifact.parent / MANIFEST).exists():
        return None
    bundle = read_bundle(artifact.parent)
    for rec in bundle.artifacts:
        if rec["path"] == artifact.name:
            return bundle, rec
    return None


# ---------------------------------------------------------------------------------------------
# Writing a bundle


class BundleWriter:
    """Stage a bundle beside `dest`, then move it into place on commit().

    with BundleWriter(dest, force=False) as w:
        path = w.path("model.int8.tflite"); ...; w.commit(manifest)
    Leaving the block without commit() (an error, Ctrl-C, SIGTERM) removes the staging folder.
    """

    def __init__(self, dest: Path, force: bool = False):
        self.dest = Path(dest)
        self.force = force
        self.staging = self.dest.with_name(f".{self.dest.name}.partial-{os.getpid()}")
        self._lock_fd: int | None = None
        self.committed = False

    def check_destination(self) -> None:
        if self.dest.exists() and not self.force:
            raise InputError(
                f"'{self.dest}' already exists", hint="pass --force to replace it, or choose another --out"
            )
        if self.dest.exists() and not (self.dest / MANIFEST).exists() and any(self.dest.iterdir()):
            raise InputError(
                f"'{self.dest}' exists and is not an edgeship bundle; refusing to replace it",
                hint="choose another --out",
            )

    def __enter__(self) -> "BundleWriter":
        self.check_destination()
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.dest.with_name(f".{self.dest.name}.lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(
                    f"another edgeship export is writing '{self.dest}' right now",
                    hint="wait for it to finish, or choose another --out",
                ) from None
            raise
        self._lock_fd = fd
        self._remove_stale_staging()
        if self._recover_interrupted_commit():
            try:
                self.check_destination()  # the restored bundle is a destination that exists
            except InputError:
                self.__exit__(None, None, None)
                raise
        self.staging.mkdir()
        return self

    def _recover_interrupted_commit(self) -> bool:
        """A `--force` commit killed between its renames leaves the previous bundle as
        `.NAME.old-PID`: put it back when the destination is missing, else remove it (the new
        bundle was already in place). Called with the lock held. True when a bundle was restored."""
        restored = False
        for old in sorted(self.dest.parent.glob(f".{self.dest.name}.old-*"), key=lambda p: p.stat().st_mtime,
                          reverse=True):
            if not self.dest.exists() and (old / MANIFEST).exists():
                os.replace(old, self.dest)
                restored = True
            else:
                shutil.rmtree(old, ignore_errors=True)
        return restored

    def _remove_stale_staging(self) -> None:
        """Staging folders left by an export that was killed outright (SIGKILL, power loss).

        Called with the lock held, so no live export owns them.
        """
        for stale in self.dest.parent.glob(f".{self.dest.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.staging / name

    def commit(self, manifest: dict) -> None:
        interrupts.raise_if_requested()  # an interrupt a finalizer swallowed still keeps nothing
        write_json_atomic(self.staging / MANIFEST, manifest)
        old = None
        if self.dest.exists():
            old = self.dest.with_name(f".{self.dest.name}.old-{os.getpid()}")
            os.replace(self.dest, old)
        os.replace(self.staging, self.dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True

    def __exit__(self, *exc) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            try:
                os.unlink(self.dest.with_name(f".{self.dest.name}.lock"))
            except FileNotFoundError:
                pass
