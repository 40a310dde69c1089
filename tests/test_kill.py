"""Nothing left running or lying around after a kill: SIGKILL an export while its Keras -> .pte
child (KERAS_BACKEND=torch) is converting; the child must die with it (PR_SET_PDEATHSIG,
edgeship/children.py), and the next export into the same folder sweeps the staging folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped running: only its exit status is left


def _gone(pid: int, within_s: float) -> bool:
    """Whether `pid` stops running within `within_s` seconds (the kernel delivers PDEATHSIG soon, not at once)."""
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_sigkill_during_conversion_leaves_no_child_and_no_staging(keras_digits, tmp_path):
    out = tmp_path / "bundle"
    edgeship = [sys.executable, "-m", "edgeship", "-q", "export", keras_digits.source, "--out", str(out)]
    proc = subprocess.Popen([*edgeship, "--to", "pte", "--quant", "fp32"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    child = None
    deadline = time.monotonic() + 600
    try:
        while child is None and time.monotonic() < deadline and proc.poll() is None:
            child = next((c for c in _children(proc.pid) if "edgeship.convert.keras_pte" in _cmdline(c)), None)
            time.sleep(0.2)
        assert child is not None, "the export never started its Keras -> pte child"
        time.sleep(1.0)  # the child is converting now
        assert _alive(child)
        staging = list(tmp_path.glob(".bundle.partial-*"))
        assert staging, "the export had no staging folder while converting"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(child, within_s=20), f"the Keras -> pte child {child} outlived its SIGKILLed parent"
    assert list(tmp_path.glob(".bundle.partial-*")) == staging  # left by the kill: nothing could clean it
    again = subprocess.run([*edgeship, "--to", "tflite", "--quant", "fp32"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (out / "manifest.json").is_file()
    assert list(tmp_path.glob(".bundle.partial-*")) == [], "the next export left the stale staging folder"


def test_a_child_started_with_die_with_parent_dies_when_its_parent_is_killed(tmp_path):
    parent_src = """
import subprocess, sys, time
from edgeship.children import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", parent_src], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert _gone(child, within_s=20), f"the child {child} outlived its SIGKILLed parent"
