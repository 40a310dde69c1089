"""The timing figures the tests used to assert, measured here instead (tests check behaviour; speed is
measured, never asserted: see the README's test section). Prints a table; asserts nothing.

    .venv/bin/python bench/timings.py [--repeats 5] [--checks 10] [--only startup,timeout,check]

startup: a fresh process importing runtime/tflite.py (onnx.py) and loading the digits int8 artifact,
         import and load seconds, with the heavy frameworks it must not import (the tests still
         check that none is imported).
timeout: LocalDevice.run_artifact on a FIFO nobody writes, timeout 5 s: how long until it returns.
check:   `edgeship check` on the digits CNN (4 targets) --checks times against its own first report
         as the baseline, with latency budgets p50 5 ms / p90 10 ms: how many latency gates
         (budgets and regression) failed, and the p50/p90 figures behind them. This is the real-
         runtime flake rate the old test asserted to be zero; tests/test_gates.py checks the
         no-flake property on 300 stated distributions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_DIGITS = f"{REPO / 'examples' / 'torch_digits.py'}:build"


def export(out: Path, formats: str) -> None:
    from click.testing import CliRunner

    from edgeship.cli import cli

    r = CliRunner().invoke(cli, ["-q", "export", TORCH_DIGITS, "--to", formats, "--quant", "fp32,int8",
                                 "--calib", "digits:train", "--golden-samples", "50", "--out", str(out),
                                 "--name", "digits"])
    if r.exit_code != 0:
        raise SystemExit(f"export failed: {r.output[-2000:]}")


def startup(tmp: Path, repeats: int) -> None:
    out = tmp / "startup"
    export(out, "tflite,onnx")
    print("\n## start-up of the standalone runners (fresh process each)\n")
    print("| runner | import s (median) | load s (median) | heavy modules imported |")
    print("| --- | --- | --- | --- |")
    for mod, art in (("tflite", "digits.int8.tflite"), ("onnx", "digits.int8.onnx")):
        code = ("import sys, time, json\nt0 = time.perf_counter()\n"
                f"from edgeship.runtime.{mod} import Runner\nt1 = time.perf_counter()\n"
                f"r = Runner({str(out / art)!r})\nt2 = time.perf_counter()\n"
                "print(json.dumps({'i': t1 - t0, 'l': t2 - t1, 'heavy': sorted(m for m in "
                "('tensorflow', 'torch', 'keras', 'onnx') if m in sys.modules)}))\n")
        got = []
        for _ in range(repeats):
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
            got.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(f"| {mod} | {statistics.median(g['i'] for g in got):.3f} | {statistics.median(g['l'] for g in got):.3f} "
              f"| {got[0]['heavy'] or 'none'} |")


def timeout(tmp: Path) -> None:
    from edgeship.bundle import read_bundle
    from edgeship.runtime.local import LocalDevice

    out = tmp / "timeout"
    export(out, "tflite")
    bundle = read_bundle(out)
    rec = next(a for a in bundle.artifacts if a["format"] == "tflite")
    fifo = tmp / "stalled.tflite"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    run = LocalDevice().run_artifact(fifo, [a[:1] for a in bundle.golden().inputs], rec["io"], warmup=0, runs=1,
                                     timeout=5)
    print(f"\n## a stalled read, timeout 5 s\n\nreturned after {time.monotonic() - t0:.1f} s: {run.error}")


GATES = """
[measure]
warmup = 10
runs = 100

[gates.latency]
p50_ms = 5.0
p90_ms = 10.0
"""


def check(tmp: Path, checks: int) -> None:
    from click.testing import CliRunner

    from edgeship.cli import cli

    folder = tmp / "check"
    folder.mkdir()
    targets = ", ".join(f'{{ format = "{f}", recipe = "{q}" }}' for f in ("tflite", "pte") for q in ("fp32", "int8"))
    cfg = folder / "edgeship.toml"
    cfg.write_text(f'out = "bundle"\ntargets = [{targets}]\ndevices = ["local"]\n\n[model]\nsource = "{TORCH_DIGITS}"\n'
                   'name = "digits"\n\n[data]\ncalib = "digits:train"\neval = "digits:test"\ngolden_samples = 450\n'
                   + GATES)
    r = CliRunner().invoke(cli, ["check", str(cfg), "--report-dir", str(folder / "first")])
    baseline = folder / "first" / "report.json"
    print(f"\n## `edgeship check` x {checks} against its own baseline (first run exit {r.exit_code})\n")
    print("| run | exit | latency gates failed | p50 ms per target | p90 ms per target |")
    print("| --- | --- | --- | --- | --- |")
    failed_total = 0
    for i in range(checks):
        out = folder / f"run{i}"
        r = CliRunner().invoke(cli, ["check", str(cfg), "--skip-export", "--baseline", str(baseline),
                                     "--report-dir", str(out)])
        data = json.loads((out / "report.json").read_text())
        lat = [g for g in data["gates"] if "latency" in g["gate"]]
        bad = [f"{g['gate']} {g['target']}" for g in lat if g["status"] != "pass"]
        failed_total += len(bad)
        p50 = " ".join(f"{x['latency']['p50_ms']:.3f}" for x in data["results"])
        p90 = " ".join(f"{x['latency']['p90_ms']:.3f}" for x in data["results"])
        print(f"| {i} | {r.exit_code} | {len(bad)}/{len(lat)} {', '.join(bad)} | {p50} | {p90} |")
    print(f"\nlatency gates failed in total: {failed_total}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--only", default="startup,timeout,check")
    args = ap.parse_args()
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="edgeship-test-timings-") as tmp:
        tmp = Path(tmp)
        if "startup" in parts:
            startup(tmp, args.repeats)
        if "timeout" in parts:
            timeout(tmp)
        if "check" in parts:
            check(tmp, args.checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
