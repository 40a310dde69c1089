"""A `--force` commit killed (SIGKILL) at each of its steps: the destination only ever holds a
complete bundle, old or new, and the next export puts a hidden previous bundle back, or removes it.

The writer runs in a child process whose os.replace / shutil.rmtree are wrapped to SIGKILL the
child at a chosen point of BundleWriter.commit (test scaffolding: the kill is real, only its
moment is chosen).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeship.bundle import MANIFEST, SCHEMA, BundleWriter, read_bundle
from edgeship.errors import InputError

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import os, shutil, signal, sys
from pathlib import Path
import edgeship.bundle as bundle

dest, version, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
calls = {"replace": 0}
real_replace, real_rmtree = os.replace, shutil.rmtree

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def replace(src, dst):
    calls["replace"] += 1
    if point == f"before-replace-{calls['replace']}":
        die()
    real_replace(src, dst)
    if point == f"after-replace-{calls['replace']}":
        die()

def rmtree(path, *a, **k):
    if point == "mid-sweep" and ".old-" in str(path):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        files[0].unlink()  # part of the previous bundle removed, then killed
        die()
    real_rmtree(path, *a, **k)

os.replace, shutil.rmtree = replace, rmtree
with bundle.BundleWriter(dest, force=True) as w:
    for name in ("m.fp32.tflite", "m.int8.tflite"):
        w.path(name).write_bytes(version.encode() * 100)
    w.commit({"schema": bundle.SCHEMA, "version": version,
              "artifacts": [{"path": "m.fp32.tflite"}, {"path": "m.int8.tflite"}]})
print("committed")
'''

# os.replace calls in commit(): 1 manifest.json into the staging folder, 2 the destination to
# .NAME.old-PID, 3 the staging folder to the destination; then the old folder is removed.
POINTS = {  # kill point -> the bundle the destination holds right after the kill (None: none)
    "before-replace-1": "v1", "after-replace-1": "v1", "before-replace-2": "v1",
    "after-replace-2": None, "before-replace-3": None,
    "after-replace-3": "v2", "mid-sweep": "v2",
}


def _v1(dest: Path) -> None:
    with BundleWriter(dest) as w:
        for name in ("m.fp32.tflite", "m.int8.tflite"):
            w.path(name).write_bytes(b"v1" * 100)
        w.commit({"schema": SCHEMA, "version": "v1",
                  "artifacts": [{"path": "m.fp32.tflite"}, {"path": "m.int8.tflite"}]})


def _holds(dest: Path) -> str | None:
    """Which complete bundle DEST holds ('v1' or 'v2'), None if there is none; fails on a half one."""
    if not dest.exists():
        return None
    version = json.loads((dest / MANIFEST).read_text())["version"]
    b = read_bundle(dest)
    for a in b.artifacts:
        assert b.artifact_path(a).read_bytes() == version.encode() * 100, (a, version)
    return version


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")
                  and not p.name.endswith(".lock"))


@pytest.mark.parametrize("point", list(POINTS))
def test_a_kill_at_each_step_of_a_forced_commit_never_loses_the_last_good_bundle(tmp_path, point):
    dest = tmp_path / "bundle"
    _v1(dest)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(dest), "v2", point], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert _holds(dest) == POINTS[point]
    hidden = [n for n in _leftovers(dest) if ".old-" in n]
    assert bool(hidden) == (point in ("after-replace-2", "before-replace-3", "after-replace-3", "mid-sweep"))

    if POINTS[point] is None:  # the next export, even without --force, puts the hidden bundle back first
        with pytest.raises(InputError, match="already exists"):
            BundleWriter(dest).__enter__()
        assert _holds(dest) == "v1" and _leftovers(dest) == []

    # a forced export sweeps what the killed one left and replaces the bundle cleanly
    proc = subprocess.run([sys.executable, "-c", CHILD, str(dest), "v3", "none"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "committed" in proc.stdout, proc.stderr[-2000:]
    assert _holds(dest) == "v3" and _leftovers(dest) == []


def test_a_hidden_bundle_is_removed_when_the_new_one_is_in_place(tmp_path):
    """The commit's last step (removing .NAME.old-PID) killed: the new bundle stays, the old goes."""
    dest = tmp_path / "bundle"
    _v1(dest)
    subprocess.run([sys.executable, "-c", CHILD, str(dest), "v2", "after-replace-3"], cwd=REPO, timeout=120)
    assert [n for n in _leftovers(dest) if ".old-" in n]
    with BundleWriter(dest, force=True) as w:
        w.path("m.fp32.tflite").write_bytes(b"v4" * 100)
        assert not [n for n in _leftovers(dest) if ".old-" in n]
        assert _holds(dest) == "v2"  # until this commit, the newer bundle stays where it was
