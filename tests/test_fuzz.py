"""Mutated .tflite and .pte files never crash edgeship: each ends in a result or a clear error."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from edgeship.bundle import read_bundle
from edgeship.errors import ArtifactError
from edgeship.fuzz import mutate
from edgeship.inspect import inspect_file
from edgeship.runtime.local import LocalDevice

CASES = {"tflite": 160, "pte": 40}  # .pte children import ExecuTorch: fewer cases in the test's budget


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, torch_digits):
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path_factory.mktemp("fuzz") / "bundle"
    export(ExportRequest(source=torch_digits.source, out=out, recipes="fp32,int8", calib="digits:train",
                         golden_samples=4))
    return read_bundle(out)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "pte"])
def test_mutants_end_in_a_result_or_a_clear_error(seeds, fmt, tmp_path):
    rng = random.Random(1234)
    records = [a for a in seeds.artifacts if a["format"] == fmt]
    donors = [seeds.artifact_path(a).read_bytes() for a in seeds.artifacts if a["format"] != fmt]
    inputs = [a[:1] for a in seeds.golden().inputs]
    device = LocalDevice()
    outcomes = Counter()
    for case in range(CASES[fmt]):
        rec = records[case % len(records)]
        kind, data = mutate(seeds.artifact_path(rec).read_bytes(), rng, donors[0])
        path = tmp_path / f"mutant{case}.{fmt}"
        path.write_bytes(data)
        try:
            inspect_file(path, timeout=60)
            outcomes["inspect ok"] += 1
        except ArtifactError as e:
            assert e.message.startswith(f"cannot read '{path}'") or "hung" in e.message
            assert "\n" not in e.message
            outcomes["inspect clear error"] += 1
        run = device.run_artifact(path, inputs, rec["io"], warmup=0, runs=1, timeout=60)
        if run.ok:
            outcomes["run ok"] += 1
        else:
            assert run.error and "\n" not in run.error
            outcomes["run crashed (contained)" if "crashed" in run.error else "run clear error"] += 1
        path.unlink()
    print(f"{fmt}: {dict(outcomes)}")
    assert sum(outcomes.values()) == 2 * CASES[fmt]


@pytest.mark.parametrize("cmd", ["inspect", "validate"])
def test_cli_on_a_mutant_exits_with_one_clear_line(seeds, cmd, tmp_path):
    rec = next(a for a in seeds.artifacts if a["format"] == "tflite")
    data = seeds.artifact_path(rec).read_bytes()
    path = tmp_path / "broken.tflite"
    path.write_bytes(data[: len(data) // 3])
    proc = subprocess.run([sys.executable, "-m", "edgeship", cmd, str(path)], capture_output=True, text=True)
    assert proc.returncode == {"inspect": 2, "validate": 1}[cmd]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "broken.tflite" in proc.stderr + proc.stdout
