"""Mutated .tflite and .pte files never crash edgeship: each ends in a result or a clear error."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from bench_modules import bench_module

from edgeship.bundle import read_bundle
from edgeship.errors import ArtifactError
from edgeship.inspect import inspect_file
from edgeship.runtime.local import LocalDevice

mutate = bench_module("mutations").mutate
mutate_delegate_payload = bench_module("mutations").mutate_delegate_payload

REPO = Path(__file__).resolve().parents[1]

CASES = {"tflite": 160, "pte": 40}  # .pte children import ExecuTorch: fewer cases in the test's budget
# At least this share of the mutants must get past the header check (inspect loads them in the
# runtime) and so reach the runtime's own parsing and kernels: a run where every mutant is turned
# away at the door tests only the door. Measured at seed 1234: see the printed spread.
MIN_REACHED_RUNTIME = {"tflite": 0.25, "pte": 0.25}
DELEGATE_SHARE = 4  # every 4th .pte case flips bits in the XNNPACK payload, which native code parses


def fuzz_case(fmt: str, case: int, original: bytes, rng: random.Random, donor: bytes) -> tuple[str, bytes]:
    if fmt == "pte" and case % DELEGATE_SHARE == DELEGATE_SHARE - 1:
        return "delegate_bitflip", mutate_delegate_payload(original, rng)
    return mutate(original, rng, donor)


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
    outcomes, by_kind = Counter(), Counter()
    for case in range(CASES[fmt]):
        rec = records[case % len(records)]
        kind, data = fuzz_case(fmt, case, seeds.artifact_path(rec).read_bytes(), rng, donors[0])
        path = tmp_path / f"mutant{case}.{fmt}"
        path.write_bytes(data)
        try:
            inspect_file(path, timeout=60)
            inspected = "inspect ok"
        except ArtifactError as e:
            assert e.message.startswith(f"cannot read '{path}'") or "hung" in e.message
            assert "\n" not in e.message
            inspected = "inspect clear error"
        run = device.run_artifact(path, inputs, rec["io"], warmup=0, runs=1, timeout=60)
        if run.ok:
            ran = "run ok"
        else:
            assert run.error and "\n" not in run.error
            ran = "run crashed (contained)" if "crashed" in run.error else "run clear error"
        outcomes[inspected] += 1
        outcomes[ran] += 1
        by_kind[(kind, inspected, ran)] += 1
        path.unlink()
    print(f"{fmt}: {dict(outcomes)}")
    for (kind, inspected, ran), n in sorted(by_kind.items()):
        print(f"  {kind:16s} {inspected:20s} {ran}: {n}")
    # the spread, not just the count: some mutants turned away, a share past the header check
    reached = outcomes["inspect ok"]
    assert outcomes["inspect clear error"] > 0, dict(outcomes)
    assert reached >= MIN_REACHED_RUNTIME[fmt] * CASES[fmt], dict(outcomes)
    assert outcomes["run clear error"] + outcomes["run crashed (contained)"] > 0, dict(outcomes)
    kinds = {k for k, _, _ in by_kind}
    assert {"bitflip", "truncate", "splice"} <= kinds, kinds
    if fmt == "pte":  # the delegate payload: past the program's verification, into XNNPACK's own parser
        delegate = {(i, r): n for (k, i, r), n in by_kind.items() if k == "delegate_bitflip"}
        assert sum(delegate.values()) == CASES[fmt] // DELEGATE_SHARE, delegate
        assert sum(n for (i, _), n in delegate.items() if i == "inspect ok") == CASES[fmt] // DELEGATE_SHARE, delegate


def test_bench_fuzz_counts_a_multi_line_run_error_as_a_finding():
    """bench/fuzz.py's docstring: an error of more than one line is a finding; run errors too."""
    import importlib.util

    from edgeship.runtime.base import AgentRun

    spec = importlib.util.spec_from_file_location("bench_fuzz", REPO / "bench" / "fuzz.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.run_outcome(AgentRun(False, error="load: ValueError: bad\nsecond line")) == (
        "run: FINDING (multi-line or empty error)", True)
    assert bench.run_outcome(AgentRun(False, error=None)) == ("run: FINDING (multi-line or empty error)", True)
    assert bench.run_outcome(AgentRun(False, error="crashed (SIGSEGV)")) == ("run: runtime crashed (contained)", False)
    assert bench.run_outcome(AgentRun(False, error="load: ValueError: bad")) == ("run: clear error", False)
    assert bench.run_outcome(AgentRun(True)) == ("run: ok", False)


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
