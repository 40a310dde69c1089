"""export --jobs: the formats of one export convert at once, in children forked after the model and data
are prepared (edgeship/forked.py); a float bundle is the one a serial export writes.

The forked children run the real converters. The one stand-in is the crash: a SIGSEGV that the test plants
in the onnx child, after the real conversion, because no converter here crashes on demand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeship import forked
from edgeship.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = f"{ROOT / 'examples' / 'torch_digits.py'}:build"
FORMATS = ("tflite", "pte", "onnx")


# The CLI in a process of its own: a test process has usually loaded TensorFlow by now, and export then
# converts one format at a time (forked.why_serial), which is not what these tests are about.
CHILD = """
import os, signal, sys
if os.environ.get("PLANT_ONNX_CRASH"):
    from edgeship.convert import torch_onnx
    real = torch_onnx.convert
    def converts_then_crashes(model, recipe, *args, **kwargs):  # planted: the real int8 conversion, then a crash
        result = real(model, recipe, *args, **kwargs)
        if recipe.name == "int8":
            os.kill(os.getpid(), signal.SIGSEGV)
        return result
    torch_onnx.convert = converts_then_crashes
from edgeship.cli import main
sys.argv = ["edgeship", *sys.argv[1:]]
main()
"""


def _export(out: Path, jobs: int, crash_onnx: bool = False, quant: str = "fp32") -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PLANT_ONNX_CRASH": "1"} if crash_onnx else {})}
    return subprocess.run([sys.executable, "-c", CHILD, "export", DIGITS, "--to", ",".join(FORMATS), "--quant",
                           quant, "--calib", "digits", "--golden-samples", "16", "--jobs", str(jobs), "--out",
                           str(out)], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "b"
    r = _export(out, 1)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_forked_float_formats_write_the_serial_bytes(serial, tmp_path):
    out = tmp_path / "b"
    r = _export(out, 2)
    assert r.returncode == 0, r.stdout + r.stderr
    one, two = (json.loads((b / "manifest.json").read_text()) for b in (serial, out))
    assert [(a["format"], a["recipe"]) for a in two["artifacts"]] == [(a["format"], a["recipe"])
                                                                      for a in one["artifacts"]]
    assert [a["sha256"] for a in two["artifacts"]] == [a["sha256"] for a in one["artifacts"]]
    assert all(a["smoke"]["status"] == "pass" for a in two["artifacts"])
    assert two["timings"]["jobs"] == 2 and "jobs" not in one["timings"]
    assert two["timings"]["stages"]["conversions"] > 0  # the children's clocks reached the manifest
    # an input of the bundle: one torch thread per child can round an int8 calibration differently
    assert two["inputs_sha256"] != one["inputs_sha256"]
    assert "2 formats at once" in " ".join(r.stdout.split())


def test_a_child_that_dies_fails_what_it_had_not_finished_and_keeps_the_rest(tmp_path):
    """The onnx child dies in its int8 conversion (after its fp32 artifact was written and proven): the
    fp32 .onnx ships, the int8 .onnx is a failure line naming the signal, the other formats ship whole."""
    out = tmp_path / "b"
    r = _export(out, 2, crash_onnx=True, quant="fp32,int8")
    r.output = r.stdout + r.stderr
    assert r.returncode == 1, r.output
    said = " ".join(r.output.split())
    assert "SIGSEGV" in said and "Traceback" not in r.output, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = {(a["format"], a["recipe"]) for a in manifest["artifacts"]}
    assert shipped == {(f, q) for f in FORMATS for q in ("fp32", "int8")} - {("onnx", "int8")}, shipped
    assert all((out / a["path"]).exists() and a["smoke"]["status"] == "pass" for a in manifest["artifacts"])
    (failed,) = manifest["failed_artifacts"]
    assert (failed["format"], failed["recipe"]) == ("onnx", "int8") and "SIGSEGV" in failed["error"], failed
    assert [p.name for p in out.glob("*.onnx")] == ["torch_digits.fp32.onnx"]


def test_run_each_keeps_order_and_raises_a_childs_error_in_the_parent(monkeypatch):
    for name in forked.FORK_UNSAFE:  # loaded by an earlier test here, perhaps; these tasks never touch them
        monkeypatch.delitem(sys.modules, name, raising=False)
    parent = os.getpid()
    assert forked.run_each([3, 1, 2], lambda n: (n * n, os.getpid() != parent), 2, None) == [
        (9, True), (1, True), (4, True)]  # each in a child of its own, the results in the tasks' order

    def refuses(n):
        if n == 2:
            raise InputError("task 2 is refused", hint="pass another")
        return n

    with pytest.raises(InputError) as e:
        forked.run_each([1, 2, 3], refuses, 2, None)
    assert e.value.message == "task 2 is refused" and e.value.hint == "pass another"

    deaths = []

    def dies_after_a_step(n):
        forked.so_far(f"step 1 of {n}")
        if n == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return n

    assert forked.run_each([1, 2], dies_after_a_step, 2,
                           lambda n, why, done: deaths.append((why, done)) or -n) == [1, -2]
    assert deaths == [("its conversion process was killed by signal 9 (SIGKILL)", "step 1 of 2")]
    forked.so_far("in this process: nowhere to write, nothing written")


def test_a_loaded_tensorflow_or_jax_makes_the_formats_run_one_after_another(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert forked.why_serial(2, 3) is None
    assert forked.why_serial(1, 3) == "one job" and forked.why_serial(4, 1) == "one task"
    monkeypatch.setitem(sys.modules, "tensorflow", sys)  # only its presence is read
    assert "tensorflow is loaded" in forked.why_serial(2, 3)
    ran_here = []
    assert forked.run_each([1, 2], lambda n: ran_here.append(os.getpid()) or n, 2, None) == [1, 2]
    assert ran_here == [os.getpid(), os.getpid()]
