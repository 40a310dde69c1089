"""--quant auto decides on what can be told apart (quantize/recipe_search.py): p50s that a one-sided
Mann-Whitney U test (alpha 0.01) plus a 10% / 0.01 ms margin cannot separate are a tie, broken by
the fixed order int8 < int8+float < int16x8 < fp16; and every candidate runs where validate runs
it, in a child process, so one that crashes the runtime is a failed row, never a dead export.

  the rule on per-run latencies: noise a raw p50 would follow (fp16 7% "faster") is a tie, the
  order keeps int8+float; a 2x gain is kept with its p; a 12% gap with overlapping runs is a tie;
  a device that reports the p50 only decides on the margins
  the same export with a CPU burner per core keeps the same recipe as without
  a candidate whose .pte crashes ExecuTorch's runtime (bits flipped in its XNNPACK payload, the
  mutants tests/test_isolation.py finds) is a row saying it crashed; the export goes on

Real converters and runtimes, real data (scikit-learn's digits), models trained here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli
from edgeship.quantize import recipe_search
from edgeship.quantize.recipe_search import ALPHA, ORDER, Candidate, faster, select

SEARCH = ["--quant", "auto", "--calib", "digits:train", "--calib-samples", "100", "--eval", "digits:test",
          "--golden-samples", "40", "--calibration", "minmax", "--bias-correction", "off", "--cle", "off",
          "--max-drop", "1", "--metric", "top1"]


def _c(name: str, samples, drop: float = 0.0) -> Candidate:
    s = [float(v) for v in samples]
    return Candidate(name, name, drop=drop, p50_ms=float(np.median(s)), samples_ms=s, size_bytes=100,
                     path=Path(name))


def _old_rule(candidates: list[Candidate]) -> Candidate:
    """The rule before: the fastest raw p50, p50s within 5% of it tied and broken by size."""
    fastest = min(c.p50_ms for c in candidates)
    return min((c for c in candidates if c.p50_ms <= fastest * 1.05), key=lambda c: (c.size_bytes, c.p50_ms))


# ---------------------------------------------------------------------------------------------
# The rule itself, on per-run latencies


def test_noise_is_a_tie_broken_by_the_fixed_order():
    spread = np.linspace(-0.1, 0.1, 30)
    with_float = _c("int8+float", 2.0 + spread)
    fp16 = _c("fp16", 1.86 + spread)  # 7% lower: what a loaded neighbour does to a p50
    fp16.size_bytes = 150
    assert fp16.p50_ms < with_float.p50_ms * 0.95
    assert _old_rule([with_float, fp16]) is fp16  # the raw p50 chose fp16 (the fresh machine's failure)
    is_faster, p = faster(fp16, with_float)
    assert not is_faster and p < ALPHA  # significant, but under the 10% margin: a tie
    assert select([fp16, with_float], 1.0) == (with_float, True)  # first in ORDER, whatever the list order
    assert ORDER == ("int8", "int8+float", "int16x8", "fp16")


def test_a_real_gain_is_kept_with_its_p():
    rng = np.random.default_rng(1)
    int8 = _c("int8", 2.0 + rng.normal(0, 0.05, 30))
    fp16 = _c("fp16", 1.0 + rng.normal(0, 0.05, 30))
    is_faster, p = faster(fp16, int8)
    assert is_faster and p < 1e-6
    assert select([int8, fp16], 1.0) == (fp16, True)
    assert select([int8, fp16], 1.0)[0] is fp16
    over = _c("fp16", 1.0 + rng.normal(0, 0.05, 30), drop=5.0)  # faster but over budget: never kept
    assert select([int8, over], 1.0) == (int8, True)


def test_a_gap_the_runs_do_not_support_is_a_tie():
    spread = np.linspace(-0.5, 0.5, 30)  # runs spread wide: a machine under load
    int8 = _c("int8", 1.0 + spread)
    fp16 = _c("fp16", 0.88 + spread)
    assert fp16.p50_ms <= int8.p50_ms * 0.9  # past the margin on the p50s alone
    is_faster, p = faster(fp16, int8)
    assert not is_faster and p >= ALPHA  # but the runs overlap
    assert select([fp16, int8], 1.0)[0] is int8


def test_without_runs_the_margins_decide():
    """A device that reports the p50 only (adb's benchmark_model): 10% and 0.01 ms, no p."""
    int8 = Candidate("int8", "int8", drop=0.0, p50_ms=2.0, size_bytes=10, path=Path("a"))
    fp16 = Candidate("fp16", "fp16", drop=0.0, p50_ms=1.85, size_bytes=20, path=Path("b"))
    assert faster(fp16, int8) == (False, None) and select([fp16, int8], 1.0)[0] is int8
    fp16.p50_ms = 1.7
    assert faster(fp16, int8) == (True, None) and select([fp16, int8], 1.0)[0] is fp16
    tiny = Candidate("int8", "int8", drop=0.0, p50_ms=0.012, size_bytes=10, path=Path("a"))
    tinier = Candidate("fp16", "fp16", drop=0.0, p50_ms=0.004, size_bytes=20, path=Path("b"))
    assert faster(tinier, tiny) == (False, None)  # 67% but 8 us: the runner's own per-call noise


# ---------------------------------------------------------------------------------------------
# The same choice under load


def _search(bundle: Path) -> dict:
    return next(a["recipe_search"] for a in json.loads((bundle / MANIFEST).read_text())["artifacts"])


@pytest.mark.slow
def test_quant_auto_chooses_the_same_under_load(torch_digits, tmp_path):
    runner = CliRunner()
    quiet = tmp_path / "quiet"
    r = runner.invoke(cli, ["export", torch_digits.source, *SEARCH, "--to", "tflite", "--out", str(quiet)])
    assert r.exit_code == 0, r.output
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        loaded = tmp_path / "loaded"
        r = runner.invoke(cli, ["export", torch_digits.source, *SEARCH, "--to", "tflite", "--out", str(loaded)])
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert r.exit_code == 0, r.output
    a, b = _search(quiet), _search(loaded)
    measured = [c["candidate"] for c in a["candidates"] if c["p50_ms"] is not None]
    assert len(measured) >= 2, a  # a choice was made between measured candidates
    assert b["kept"] == a["kept"], (a, b)
    assert a["order"] == list(ORDER) and a["alpha"] == ALPHA
    for s in (a, b):  # each row carries the runs behind it, and the kept one's reason states the rule
        rows = [Candidate.from_row(c) for c in s["candidates"]]
        assert select(rows, 1.0)[0].candidate == s["kept"]
        kept = next(c for c in s["candidates"] if c["kept"])
        assert len(kept["samples_ms"]) == s["runs"] and kept["reason"].startswith("within budget")
    assert a["measured_on"].startswith("host (this machine: the runner validate uses, in a child process)")


# ---------------------------------------------------------------------------------------------
# A candidate that crashes the runtime


@pytest.mark.slow
def test_a_crashing_candidate_is_a_failed_row_not_a_dead_export(torch_digits, tmp_path, monkeypatch):
    """ExecuTorch's Python runtime aborts on about one XNNPACK payload mutant in eight (SIGABRT,
    tests/test_isolation.py). The fp16 candidate's .pte is replaced, after conversion and before it
    is measured, by the first mutant that crashes it; run in this process, as the search did
    before, it would have killed the export."""
    from bench_modules import bench_module

    from edgeship.runtime.local import LocalDevice

    mutate_delegate_payload = bench_module("mutations").mutate_delegate_payload
    monkeypatch.setenv("EDGESHIP_PTE_RUNTIME", "python")  # the runtime these mutants crash
    planted = []

    def crash_fp16(c: Candidate):
        if c.candidate != "fp16":
            return
        data, rng = c.path.read_bytes(), random.Random(7)
        x = [torch_digits.test.batch(0, 1)[0]]
        for _ in range(80):
            c.path.write_bytes(mutate_delegate_payload(data, rng))
            run = LocalDevice().run_artifact(c.path, x, None, warmup=0, runs=1, timeout=60)
            if not run.ok and "crashed" in (run.error or ""):
                planted.append(run.error)
                return
        pytest.fail("no mutant crashed the runtime: nothing to contain")

    monkeypatch.setattr(recipe_search.Search, "before_measure", staticmethod(crash_fp16))
    bundle = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", torch_digits.source, *SEARCH, "--to", "pte", "--out", str(bundle)])
    assert planted, r.output
    assert r.exit_code == 0, r.output
    s = _search(bundle)
    fp16 = next(c for c in s["candidates"] if c["candidate"] == "fp16")
    assert fp16["reason"].startswith("failed on this host: runtime crashed (killed by SIG"), fp16
    assert fp16["p50_ms"] is None and not fp16["kept"] and s["kept"] != "fp16"
    assert "Traceback" not in r.output
    assert (bundle / f"{Path(torch_digits.source.split(':')[0]).stem}.{s['kept'].split('+')[0]}.pte").exists() or \
        any(p.suffix == ".pte" for p in bundle.iterdir())
