"""An export interrupted mid-write leaves no partial artifact and no corrupt manifest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _start_export(out: Path, source: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgeship", "export", source, "--to", "tflite,pte", "--quant", "fp32,int8",
           "--calib", "digits:train", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=dict(os.environ, CI="true"))


def _wait_for_first_artifact(out: Path, proc: subprocess.Popen) -> Path:
    """Until the export stages its first artifact, however slow the machine: no deadline, since the
    export itself ends (and fails the test) if the moment is missed."""
    while True:
        for staging in out.parent.glob(f".{out.name}.partial-*"):
            if any(p.suffix in (".tflite", ".pte") for p in staging.iterdir()):
                return staging
        if proc.poll() is not None:
            pytest.fail(f"export ended before it was interrupted: {proc.stderr.read()[-500:]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_mid_export_leaves_nothing(tmp_path, torch_digits_pt2):
    out = tmp_path / "bundle"
    proc = _start_export(out, torch_digits_pt2.source)
    staging = _wait_for_first_artifact(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-500:]
    assert "interrupted" in err
    assert not out.exists() and not staging.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigkill_mid_export_never_exposes_a_half_bundle(tmp_path, torch_digits_pt2):
    out = tmp_path / "bundle"
    proc = _start_export(out, torch_digits_pt2.source)
    staging = _wait_for_first_artifact(out, proc)
    proc.kill()
    proc.wait(timeout=60)
    assert not out.exists()  # the destination only ever holds a complete bundle
    # the next export removes what the killed one left and writes a complete bundle
    proc = subprocess.run([sys.executable, "-m", "edgeship", "-q", "export", torch_digits_pt2.source, "--to", "tflite",
                           "--quant", "fp32", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert not staging.exists() and (out / "manifest.json").exists()


class _KillsInFinalizer:
    """Sends SIGTERM to this process from inside __del__, where Python swallows the
    KeyboardInterrupt its handler raises ("Exception ignored in ..."), as it did in CI inside
    torch's StorageWeakRef.__del__ and JAX's GC callback."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary, still inside __del__
            pass


def test_an_interrupt_swallowed_by_a_finalizer_still_stops_the_commit(tmp_path, monkeypatch):
    from edgeship import interrupts
    from edgeship.bundle import BundleWriter

    swallowed = []  # what Python's "Exception ignored in ..." would have printed
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))
    dest = tmp_path / "bundle"
    with interrupts.handled():
        with pytest.raises(KeyboardInterrupt):
            with BundleWriter(dest) as writer:
                writer.path("m.tflite").write_bytes(b"x")
                _KillsInFinalizer()  # dropped at once: __del__ runs here and its exception is swallowed
                assert interrupts.requested()  # the exception never reached this frame; the request did
                writer.commit({"schema": "edgeship.bundle/1", "artifacts": []})
    assert swallowed == [KeyboardInterrupt]
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    assert not interrupts.requested()  # the block's end forgets it
