"""Isolation: a runtime that crashes or hangs on an artifact fails that artifact, never edgeship.

The crashing artifact is planted for real: a real .pte export with bits flipped in its XNNPACK
delegate payload (fixed seed), which ExecuTorch's XNNPACK compiler does not verify and aborts on
(about one mutant in eight here: SIGABRT from XNNCompiler.cpp).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys

import pytest
from bench_modules import bench_module

from edgeship.bundle import read_bundle
from edgeship.runtime.local import LocalDevice

mutate_delegate_payload = bench_module("mutations").mutate_delegate_payload

SEARCH_SEED = 7  # the search is deterministic: the same export and seed give the same mutants
SEARCH_CASES = 80


def python_runtime() -> LocalDevice:
    """The host with ExecuTorch's Python runtime for .pte: the runtime these mutants crash (the
    native runner's own containment is in test_native_runner.py)."""
    device = LocalDevice()
    device.pte_runtime = "python"
    return device


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, torch_digits):
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path_factory.mktemp("isolation") / "bundle"
    export(ExportRequest(source=torch_digits.source, out=out, targets=["tflite", "pte"], recipes="fp32",
                         calib="digits:train", golden_samples=16))
    return read_bundle(out)


@pytest.fixture(scope="module")
def crashing_pte(bundle, tmp_path_factory):
    """Bytes of a mutated .pte on which the runtime dies of a signal."""
    rec = next(a for a in bundle.artifacts if a["format"] == "pte")
    data = bundle.artifact_path(rec).read_bytes()
    rng = random.Random(SEARCH_SEED)
    device = python_runtime()
    inputs = [a[:1] for a in bundle.golden().inputs]
    path = tmp_path_factory.mktemp("crash") / "mutant.pte"
    for _ in range(SEARCH_CASES):
        mutant = mutate_delegate_payload(data, rng)
        path.write_bytes(mutant)
        run = device.run_artifact(path, inputs, rec["io"], warmup=0, runs=1, timeout=60)
        if not run.ok and "crashed" in (run.error or ""):
            return mutant
    pytest.fail(f"no mutant among {SEARCH_CASES} crashed the runtime: the isolation test has nothing to contain")


def test_crash_is_reported_with_its_signal(crashing_pte, bundle, tmp_path):
    rec = next(a for a in bundle.artifacts if a["format"] == "pte")
    path = tmp_path / "crash.pte"
    path.write_bytes(crashing_pte)
    run = python_runtime().run_artifact(path, [a[:1] for a in bundle.golden().inputs], rec["io"], warmup=0, runs=1)
    assert not run.ok
    assert run.error.startswith("runtime crashed (killed by SIG"), run.error
    assert "\n" not in run.error


def test_crash_fails_only_its_artifact(crashing_pte, bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.root, copy)
    pte = next(a for a in bundle.artifacts if a["format"] == "pte")
    (copy / pte["path"]).write_bytes(crashing_pte)
    proc = subprocess.run([sys.executable, "-m", "edgeship", "validate", str(copy), "--runs", "3",
                           "--pte-runtime", "python", "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    import json

    records = {r["artifact"]: r for r in json.loads((tmp_path / "r.json").read_text())["artifacts"]}
    crashed = records.pop(pte["path"])
    assert crashed["status"] == "error" and "killed by SIG" in crashed["error"]
    assert records and all(r["status"] == "pass" for r in records.values())  # the others still got results


def test_hang_is_cut_by_the_timeout(bundle, tmp_path):
    """An artifact whose read never returns (a FIFO nobody writes, like a stalled network mount):
    the child is killed at the timeout, the artifact fails, edgeship returns. Only the timeout path
    writes "timed out after 5 s"; how long the return takes is measured in bench/timings.py."""
    import os

    rec = next(a for a in bundle.artifacts if a["format"] == "tflite")
    path = tmp_path / "stalled.tflite"
    os.mkfifo(path)
    run = LocalDevice().run_artifact(path, [a[:1] for a in bundle.golden().inputs], rec["io"], warmup=0, runs=1,
                                     timeout=5)
    assert not run.ok and run.error.startswith("timed out after 5 s"), run.error
