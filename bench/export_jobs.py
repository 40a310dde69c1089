"""One multi-format export, the formats one after another (`--jobs 1`) against at once (`--jobs N`).

    .venv/bin/python bench/export_jobs.py [--model mobilenet_v2_224] [--to tflite,pte,onnx] [--quant fp32,int8]
                                          [--jobs 2] [--repeats 2]

The same `edgeship export` command (the CLI, defaults otherwise: rescues on) alternates between the two,
each in a fresh process; the script prints wall and CPU seconds per run, their medians and ratios, and
how many artifacts both wrote byte for byte (float ones must match; a calibrated one can differ in the
last bits of its scales, as a forked child computes with one torch thread). The
models are bench/export_time.py's. Compare the ratio, not seconds: the machine may be shared, and the
load average is printed at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_time import models, timed  # bench/ is not a package: its folder on the path


def run(model, to: str, quant: str, jobs: int, out: Path) -> dict:
    exe = Path(sys.executable).parent / "edgeship"
    proc, wall, cpu = timed([str(exe), "-q", "export", model.source, "--to", to, "--quant", quant, "--calib",
                             model.calib, "--out", str(out), "--force", "--jobs", str(jobs)])
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    return {"jobs": jobs, "exit": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "sha256": sorted(a["sha256"] for a in manifest.get("artifacts", [])),
            "timings": manifest.get("timings"), "stderr": proc.stderr[-400:] if proc.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2_224", help=", ".join(models()))
    ap.add_argument("--to", default="tflite,pte,onnx")
    ap.add_argument("--quant", default="fp32,int8")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every run here")
    args = ap.parse_args()
    model = models()[args.model]
    print(f"{model.name}: --to {args.to} --quant {args.quant}; --jobs 1 against --jobs {args.jobs}, "
          f"{args.repeats} each, alternating; load average {os.getloadavg()[0]:.2f}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="edgeship-export-jobs-") as tmp:
        for i in range(args.repeats):
            for jobs in (1, args.jobs):
                r = run(model, args.to, args.quant, jobs, Path(tmp) / f"{jobs}-{i}")
                runs.append(r)
                print(f"  --jobs {jobs}: exit {r['exit']}, wall {r['wall_s']} s, CPU {r['cpu_s']} s "
                      f"{r['stderr']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    med = {j: (statistics.median(r["wall_s"] for r in runs if r["jobs"] == j),
               statistics.median(r["cpu_s"] for r in runs if r["jobs"] == j)) for j in (1, args.jobs)}
    first = {j: next(r["sha256"] for r in runs if r["jobs"] == j) for j in (1, args.jobs)}
    same = f"{len(set(first[1]) & set(first[args.jobs]))} of {len(first[1])}"
    print(f"| model | formats x recipes | --jobs 1 wall / CPU s | --jobs {args.jobs} wall / CPU s | wall ratio | "
          "same bytes (artifacts) |")
    print("|---|---|---|---|---|---|")
    print(f"| {model.name} | {args.to} x {args.quant} | {med[1][0]:.1f} / {med[1][1]:.1f} | "
          f"{med[args.jobs][0]:.1f} / {med[args.jobs][1]:.1f} | {med[args.jobs][0] / med[1][0]:.2f}x | "
          f"{same} |")


if __name__ == "__main__":
    main()
