"""The real-model zoo through every route, in one go: delegation, speed against the same model's
.tflite, int8 accuracy, the export's smoke result and size, per model x format x recipe; then the
model families trained here (bench/families.py: a transformer, an audio CNN, a Keras transformer+GRU,
a squeeze-excite/hard-swish CNN), with top-1 on their held-out labels.

    .venv/bin/python bench/zoo.py [--only onet,fer_xception,kws_cnn] [--no-families] [--runs 30]
                                  [--out bench/ZOO.md]

Each model (examples/zoo/__init__.py ZOO) is exported once per format with the CLI a user runs
(`edgeship export SOURCE --to FMT --quant fp32,int8 --calib ZOO_DATA --golden-samples 8`), then
`edgeship validate BUNDLE --json` times it on this host (1 thread, 5 warm-up runs, --runs timed)
and compares it with the float reference on the golden samples. A format whose export fails is
a row with the export's own last line. Targets (not asserted): every .pte >= 95% delegated;
.pte p50 within 1.3x of the .tflite p50 for the same model and recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import families  # bench/families.py, beside this file
from zoo import FORMATS, RECIPES, ZOO

EDGESHIP = [sys.executable, "-m", "edgeship"]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_model(m, fmt: str, work: Path, runs: int) -> list[dict]:
    out = work / f"{m.name}-{fmt}"
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [*EDGESHIP, "-q", "export", m.source, "--to", fmt, "--quant", ",".join(RECIPES), "--calib", m.calib,
           "--golden-samples", "8", "--out", str(out), "--force"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    export_s = time.perf_counter() - t0
    rows = []
    if proc.returncode != 0 and not (out / "manifest.json").exists():
        err = _last_line(proc.stderr) or _last_line(proc.stdout)
        return [{"model": m.name, "format": fmt, "recipe": r, "export": f"exit {proc.returncode}: {err}",
                 "export_s": export_s} for r in RECIPES]
    report = out / "validate.json"
    vproc = subprocess.run([*EDGESHIP, "-q", "validate", str(out), "--runs", str(runs), "--warmup", "5",
                            "--json", str(report)], capture_output=True, text=True, env=env)
    (out / "export.rc").write_text(f"{proc.returncode}\n{_last_line(proc.stderr)}\n{export_s}\n")
    return collect(m, fmt, out, vproc.stdout + vproc.stderr)


def collect(m, fmt: str, out: Path, validate_output: str = "") -> list[dict]:
    """The rows of one exported and validated bundle folder (also for a run that was cut short)."""
    rc, err, export_s = (out / "export.rc").read_text().split("\n")[:3] if (out / "export.rc").exists() else \
        ("?", "", "nan")
    export_s = float(export_s)
    manifest, rows = {}, []
    if (out / "manifest.json").exists():
        doc = json.loads((out / "manifest.json").read_text())
        manifest = {a["path"]: a for a in doc["artifacts"] + doc.get("failed_artifacts", [])}
    report = out / "validate.json"
    results = {r["artifact"]: r for r in json.loads(report.read_text())["artifacts"]} if report.exists() else {}
    for recipe in RECIPES:
        name = next((p for p in manifest if f".{recipe}." in p), None)
        rec, res = manifest.get(name, {}), results.get(name, {})
        acc = res.get("accuracy") or {}
        deleg = next((d for d in (res.get("delegate"), rec.get("delegation")) if d and d.get("total_ops")), {})
        rows.append({
            "model": m.name, "format": fmt, "recipe": recipe, "export": "ok" if name else
            f"exit {rc}: {err}", "export_s": export_s,
            "delegated": deleg.get("delegated_ops"), "total": deleg.get("total_ops"),
            "p50_ms": (res.get("latency") or {}).get("p50_ms"), "snr_db": acc.get("snr_db"),
            "cosine": acc.get("cosine"), "size": rec.get("size_bytes"),
            "smoke": _smoke(rec.get("smoke")),
            "validate": res.get("status", "—") + (f": {res['error']}" if res.get("error") else ""),
        })
        if res.get("status") == "error" and not res.get("error"):
            rows[-1]["validate"] += ": " + _last_line(validate_output)[:160]
    return rows


def _smoke(smoke: dict | None) -> str:
    if not smoke:
        return "not run (export had no smoke run)"
    return smoke["status"] + (f": {smoke['error'][:100]}" if smoke.get("error") else "")


def _f(v, fmt="{:.3g}") -> str:
    return "—" if v is None else fmt.format(v)


def table(rows: list[dict]) -> str:
    tfl = {(r["model"], r["recipe"]): r.get("p50_ms") for r in rows if r["format"] == "tflite"}
    head = ("| model | format | recipe | export s | delegated | p50 ms | x .tflite p50 | int8 SNR dB | int8 cosine "
            "| smoke | validate | size |")
    out = [head, "|" + "---|" * 12]
    for r in rows:
        if r["export"] != "ok":
            what = r["export"] if r["export"].startswith("not measured") else f"export failed: {r['export'][:200]}"
            out.append(f"| {r['model']} | {r['format']} | {r['recipe']} | {_f(r.get('export_s'), '{:.0f}')} | {what} "
                       "| | | | | | | |")
            continue
        d = "—" if r["delegated"] is None or not r["total"] else \
            f"{100 * r['delegated'] / r['total']:.0f}% ({r['delegated']}/{r['total']})"
        base = tfl.get((r["model"], r["recipe"]))
        ratio = "—" if not (base and r["p50_ms"]) else f"{r['p50_ms'] / base:.2f}x"
        q = r["recipe"] == "int8"
        out.append(f"| {r['model']} | {r['format']} | {r['recipe']} | {_f(r.get('export_s'), '{:.0f}')} | {d} | {_f(r['p50_ms'])} | {ratio} | "
                   f"{_f(r['snr_db'], '{:.1f}') if q else ''} | {_f(r['cosine'], '{:.4f}') if q else ''} | "
                   f"{r['smoke']} | {r['validate'][:120]} | {_f(r['size'] and r['size'] / 1024, '{:.0f}')} KB |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated zoo model and family names")
    ap.add_argument("--no-families", action="store_true", help="the zoo's pretrained models only")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--collect", type=Path, help="tabulate the bundle folders an earlier run left in DIR")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = []
    t0 = time.perf_counter()
    if args.collect:
        for m in ZOO:
            for fmt in args.formats.split(","):
                if only and m.name not in only:
                    continue
                if (args.collect / f"{m.name}-{fmt}" / "validate.json").is_file():
                    rows.extend(collect(m, fmt, args.collect / f"{m.name}-{fmt}"))
                else:
                    rows.extend({"model": m.name, "format": fmt, "recipe": r,
                                 "export": "not measured: the run was cut short before this one finished"}
                                for r in RECIPES)
        print(table(rows))
        return 0
    family_rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgeship-zoo-") as tmp:
        for m in ZOO:
            if only and m.name not in only:
                continue
            for fmt in args.formats.split(","):
                print(f"{m.name} -> {fmt} ...", file=sys.stderr, flush=True)
                rows.extend(run_model(m, fmt, Path(tmp), args.runs))
                if args.json:  # as it goes: a run cut short keeps what it measured
                    args.json.write_text(json.dumps({"zoo": rows, "families": family_rows}, indent=1, default=str))
        for f in [] if args.no_families else families.FAMILIES:
            if only and f.name not in only:
                continue
            for fmt in args.formats.split(","):
                print(f"{f.name} -> {fmt} ...", file=sys.stderr, flush=True)
                family_rows.extend(families.run_one(f, fmt, Path(tmp), args.runs))
                if args.json:
                    args.json.write_text(json.dumps({"zoo": rows, "families": family_rows}, indent=1, default=str))
    text = table(rows) if rows else ""
    if family_rows:
        text += ("\n\n" if text else "") + "Families (top-1 against the held-out labels):\n\n" + families.table(family_rows)
    print(text)
    print(f"\n{len(rows) + len(family_rows)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
