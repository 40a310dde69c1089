"""Model families edgeship was not tuned on, through every route with the CLI a user runs:
delegation, speed against the same model's .tflite, accuracy on held-out real data, validate's verdict.

    nice .venv/bin/python bench/families.py [--only langid_transformer,kws_cnn] [--runs 30]
                                            [--out bench/FAMILIES.md] [--json rows.json] [--keep DIR]

The models (examples/families/, FAMILIES below) are trained here on real data (gettext catalogs,
espeak-ng speech, scikit-learn's digits) and cached. Each is exported once per format:
`edgeship -q export SOURCE --to FMT --quant fp32,int8 --calib <training split> --eval <held-out split>
--golden-samples 64 --name NAME`, then `edgeship -q validate BUNDLE --json R --runs N --warmup 5` times it on this
host and scores it against the float model and the labels of the held-out samples. A format whose
export fails is a row with the export's own last line. Targets (issue 21, not asserted): every .pte
>= 95% delegated; .pte p50 within 1.3x of the .tflite p50 for the same model and recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAM = REPO / "examples" / "families"
EDGESHIP = [sys.executable, "-m", "edgeship"]
FORMATS = ("tflite", "pte", "onnx")
RECIPES = ("fp32", "int8")


@dataclass(frozen=True)
class Family:
    name: str  # examples/families/<name>.py:build
    data: str  # family_data.<data>() is the held-out split, <data>_calib() the training split
    what: str

    @property
    def source(self) -> str:
        return f"{FAM / self.name}.py:build"


FAMILIES = [
    Family("langid_transformer", "langid_torch", "PyTorch nn.TransformerEncoder on byte ids, padding mask from "
           "the ids, masked mean pool; 8 languages (gettext catalogs)"),
    Family("kws_cnn", "keywords_torch", "PyTorch audio: STFT-as-Conv1d, power, mel, log front end in the graph, "
           "DS-CNN; 8 words (espeak-ng, held-out speakers)"),
    Family("langid_keras", "langid_keras", "Keras 3: Embedding(mask_zero), LayerNormalization, "
           "MultiHeadAttention, Dense(gelu), GRU; 8 languages"),
    Family("mobilenet_v3_keras", "digits_keras", "keras.applications.MobileNetV3Small (hard-swish, "
           "squeeze-excite), trained on digits 32x32x3"),
]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _warnings(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if "warn" in ln.lower() or "delegat" in ln.lower()][:10]


def run_one(f: Family, fmt: str, work: Path, runs: int) -> list[dict]:
    out = work / f"{f.name}-{fmt}"
    env = {**os.environ, "COLUMNS": "400"}
    data = FAM / "family_data.py"
    cmd = [*EDGESHIP, "-q", "export", f.source, "--to", fmt, "--quant", ",".join(RECIPES),
           "--calib", f"{data}:{f.data}_calib", "--eval", f"{data}:{f.data}", "--golden-samples", "64",
           "--name", f.name, "--out", str(out), "--force"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    export_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.log").write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    base = {"model": f.name, "format": fmt, "export_s": round(export_s, 1), "export_rc": proc.returncode,
            "export_warnings": _warnings(proc.stdout + proc.stderr)}
    if not (out / "manifest.json").exists():
        err = _last_line(proc.stderr) or _last_line(proc.stdout)
        return [{**base, "recipe": r, "export": f"exit {proc.returncode}: {err}"} for r in RECIPES]
    report = out / "validate.json"
    vproc = subprocess.run([*EDGESHIP, "-q", "validate", str(out), "--runs", str(runs), "--warmup", "5",
                            "--json", str(report)], check=False, capture_output=True, text=True, env=env)
    (out / "validate.log").write_text(vproc.stdout + "\n--- stderr\n" + vproc.stderr)
    doc = json.loads((out / "manifest.json").read_text())
    manifest = {a["recipe"]: a for a in doc.get("failed_artifacts", []) + doc["artifacts"]}
    results = {}
    if report.exists():
        for r in json.loads(report.read_text())["artifacts"]:
            results[r.get("recipe") or next((k for k in RECIPES if f".{k}." in r["artifact"]), "?")] = r
    rows = []
    for recipe in RECIPES:
        rec, res = manifest.get(recipe), results.get(recipe, {})
        if rec is None:
            rows.append({**base, "recipe": recipe, "export": f"exit {proc.returncode}: not in the manifest: "
                         f"{_last_line(proc.stderr) or _last_line(proc.stdout)}"})
            continue
        if rec.get("error") and not res:
            rows.append({**base, "recipe": recipe, "export": f"{rec.get('stage', 'convert')}: {rec['error']}"})
            continue
        acc = res.get("accuracy") or {}
        deleg = next((d for d in (res.get("delegate"), rec.get("delegation")) if d and d.get("total_ops")), {})
        rows.append({**base, "recipe": recipe, "export": "ok",
                     "delegated": deleg.get("delegated_ops"), "total": deleg.get("total_ops"),
                     "kept_out": deleg.get("kept_out_of_xnnpack") or deleg.get("cpu_ops") or deleg.get("fallback"),
                     "p50_ms": (res.get("latency") or {}).get("p50_ms"), "cosine": acc.get("cosine"),
                     "snr_db": acc.get("snr_db"), "top1": acc.get("accuracy"),
                     "float_top1": acc.get("reference_accuracy"), "agree": acc.get("top1_agreement"),
                     "validate": res.get("status", "—") + (f": {res['error']}" if res.get("error") else ""),
                     "warnings": rec.get("warnings")})
        if res.get("status") in (None, "error") and not res.get("error"):
            rows[-1]["validate"] += ": " + _last_line(vproc.stdout + vproc.stderr)[:200]
    return rows


def _f(v, fmt="{:.3g}") -> str:
    return "—" if v is None else fmt.format(v)


def table(rows: list[dict]) -> str:
    tfl = {(r["model"], r["recipe"]): r.get("p50_ms") for r in rows if r["format"] == "tflite"}
    out = [("| model | format | recipe | export s | delegated | p50 ms | x .tflite p50 | top-1 % (float) "
            "| cosine vs float | validate |"), "|" + "---|" * 10]
    for r in rows:
        if r["export"] != "ok":
            out.append(f"| {r['model']} | {r['format']} | {r['recipe']} | {r['export_s']} | "
                       f"**failed**: {r['export'][:300]} | | | | | |")
            continue
        d = "—" if not r.get("total") else f"{100 * r['delegated'] / r['total']:.0f}% ({r['delegated']}/{r['total']})"
        base = tfl.get((r["model"], r["recipe"]))
        ratio = "—" if not (base and r["p50_ms"]) else f"{r['p50_ms'] / base:.2f}x"
        top1 = "—" if r["top1"] is None else f"{r['top1']:.1f} ({_f(r['float_top1'], '{:.1f}')})"
        out.append(f"| {r['model']} | {r['format']} | {r['recipe']} | {r['export_s']} | {d} | {_f(r['p50_ms'])} | "
                   f"{ratio} | {top1} | {_f(r['cosine'], '{:.4f}')} | {r['validate'][:160]} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated family names")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON (as it goes)")
    ap.add_argument("--keep", type=Path, help="keep the bundles and logs in this folder")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeship-families-") as tmp:
        work = args.keep or Path(tmp)
        for f in FAMILIES:
            if only and f.name not in only:
                continue
            for fmt in args.formats.split(","):
                print(f"{f.name} -> {fmt} ...", file=sys.stderr, flush=True)
                rows.extend(run_one(f, fmt, work, args.runs))
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1, default=str))
    text = table(rows)
    print(text)
    print(f"\n{len(rows)} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
