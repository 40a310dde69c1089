"""Ten architectures edgeship was never tuned on, through every format and recipe with the CLI a user runs:
what exports, what is delegated, what keeps its accuracy. Random weights (seeded; the question is whether
the conversion is right, which any weights show), synthetic data shaped like each model's input
(bench/models/unseen/data.py).

    .venv/bin/python bench/unseen.py [--only unet,crnn] [--runs 10] [--out bench/UNSEEN.md]

Per model: `edgeship export bench/models/unseen/M.py:build --to tflite,pte,onnx --quant fp32,int8
--calib bench/models/unseen/data.py:M_calib --golden-samples 16`, then `edgeship validate BUNDLE --json`
(1 thread, 5 warm-up runs, --runs timed). A row per model x format x recipe: exported or why not,
delegated share, p50, the worst output's cosine and SNR against the float model, validate's status.

    superres   conv + PixelShuffle                 unet      Conv/GroupNorm/SiLU, nearest + bilinear, skip cats
    convnext   depthwise 7x7, NHWC LayerNorm, GELU gpt       Embedding on int64 ids, nn.MultiheadAttention, causal mask
    twoio      two inputs, two outputs, 'meta'     crnn      Conv2d on a spectrogram, bidirectional nn.GRU
    l2norm     adaptive pool + F.normalize         kconv1d   Keras Embedding, Conv1D, GlobalMaxPooling1D
    klstm      Keras Bidirectional(LSTM)           kcnn      Keras SeparableConv2D, UpSampling2D, Concatenate, swish

A second ten (a later probe):

    tcn        weight-norm Conv1d, stride+dilation, PReLU   shufflenet channel shuffle, chunk, Hardswish, SE/Hardsigmoid
    mixer      MLP-Mixer: einsum token mixing, tanh GELU    swin       roll-shifted windows, rel-pos bias gather, q @ k^T
    yolohead   box decode: meshgrid, sigmoid, exp; 2 outs   deconv     ConvTranspose2d, InstanceNorm2d, LeakyReLU, Tanh
    kdeconv    Keras Conv2DTranspose, BN, LeakyReLU, tanh   ktextcausal Keras int ids, pos Embedding, causal MHA, gelu
    kpreproc   Keras Rescaling, Normalization, ReLU6, Add   kgrutd     Keras Conv1D, GRU(seq), TimeDistributed(Dense)
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

HERE = Path(__file__).resolve().parent / "models" / "unseen"
MODELS = ("superres", "unet", "convnext", "gpt", "twoio", "crnn", "l2norm", "kconv1d", "klstm", "kcnn",
          "tcn", "shufflenet", "mixer", "swin", "yolohead", "deconv", "kdeconv", "ktextcausal", "kpreproc", "kgrutd")
FORMATS, RECIPES = ("tflite", "pte", "onnx"), ("fp32", "int8")
EDGESHIP = [sys.executable, "-m", "edgeship"]


def run(name: str, work: Path, runs: int) -> dict:
    out = work / name
    env = {**os.environ, "COLUMNS": "200"}
    t0 = time.perf_counter()
    export = subprocess.run([*EDGESHIP, "-q", "export", f"{HERE / name}.py:build", "--to", ",".join(FORMATS),
                             "--quant", ",".join(RECIPES), "--calib", f"{HERE / 'data.py'}:{name}_calib",
                             "--golden-samples", "16", "--out", str(out), "--force"],
                            capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    report = out / "validate.json"
    validate = subprocess.run([*EDGESHIP, "-q", "validate", str(out), "--runs", str(runs), "--warmup", "5", "--json",
                               str(report)], capture_output=True, text=True, env=env, check=False)
    rows = json.loads(report.read_text())["artifacts"] if report.exists() else []
    return {"model": name, "export_rc": export.returncode, "export_s": round(seconds, 1),
            "validate_rc": validate.returncode, "artifacts": rows,
            "export_tail": export.stderr.strip().splitlines()[-1:] if export.stderr.strip() else []}


def _worst(row: dict, key: str):
    outputs = ((row.get("accuracy") or {}).get("outputs") or {}).values()
    values = [o.get(key) for o in outputs if o.get(key) is not None]
    return min(values) if values else None


def table(results: list[dict]) -> str:
    lines = [("| model | export exit / s | validate exit | format | recipe | artifact | delegated | p50 ms | cosine "
              "| SNR dB | validate |"), "|" + "---|" * 11]
    for r in results:
        by = {(a.get("format"), a.get("recipe")): a for a in r["artifacts"]}
        for fmt in FORMATS:
            for recipe in RECIPES:
                a = by.get((fmt, recipe))
                head = f"| {r['model']} | {r['export_rc']} / {r['export_s']:.0f} | {r['validate_rc']} | {fmt} | {recipe} "
                if a is None:
                    lines.append(head + "| none (no row) | | | | | |")
                    continue
                if a.get("status") == "error":
                    lines.append(head + f"| **{(a.get('error') or '')[:140]}** | | | | | error |")
                    continue
                cov = (a.get("delegation") or {}).get("coverage")
                cos, snr = _worst(a, "cosine"), _worst(a, "snr_db")
                p50 = (a.get("latency") or {}).get("p50_ms")
                lines.append(head + "| ok | " + ("—" if cov is None else f"{100 * cov:.0f}%") + " | "
                             + ("—" if p50 is None else f"{p50:.3g}") + " | "
                             + ("—" if cos is None else f"{cos:.4f}") + " | "
                             + ("—" if snr is None else f"{snr:.1f}") + f" | {a.get('status')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; the set: {', '.join(MODELS)}")
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeship-unseen-") as tmp:
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            results.append(run(name, Path(tmp), args.runs))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str))
    text = table(results)
    print(text)
    print(f"\n{len(results)} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
