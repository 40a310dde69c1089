"""int16x8 against int8 on .tflite from PyTorch sources, where int16x8 should beat int8 (issue 21, item 4):
a vision transformer from stock modules (LayerNorm, GELU, softmax, batch matmuls: what int8 keeps float or
loses), the digits CNN, and the zoo's ImageNet MobileNetV2.

    .venv/bin/python bench/int16x8.py [--models vit,digits,mobilenet_v2_torch] [--runs 50] [--out FILE]

Per model, the CLI a user runs: `edgeship export SRC --to tflite --quant fp32,int8,int16x8 --calib C
--eval E` (golden samples with labels where the data has them), then `edgeship validate BUNDLE --json
--runs N`. The table: delegated ops, p50 (validate's native LiteRT runner), weakest-output SNR and
cosine against the float model, top-1 against the labels (float's beside it) and export seconds. The
machine may be shared: the load average is printed with the table.

Sources here: `vit` (bench/delegation.py's ViT, trained once on scikit-learn's digits and cached), with
`vit_calib` (200 training images) and `vit_eval` (the held-out quarter, labelled).
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

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
EPOCHS = 6  # bench/delegation.py's default: its cached weights are reused


def _delegation():
    sys.path.insert(0, str(HERE.parent))
    import delegation

    return delegation


def vit():
    """edgeship source: the trained ViT (bench/delegation.py), batch 1."""
    import torch

    d = _delegation()
    with tempfile.TemporaryDirectory() as tmp:
        d.train("vit", EPOCHS, Path(tmp))
        state = torch.load(Path(tmp) / "vit.pt")["state"]
    model = d.ViT()
    model.load_state_dict(state)
    return model.eval(), (torch.zeros(1, 1, 8, 8),)


def _vit_split():
    import torch

    torch.manual_seed(0)  # train()'s split
    x, y = _delegation().data("vit")
    perm = torch.randperm(len(x))
    x, y = x[perm].numpy(), y[perm].numpy()
    return x, y, int(len(x) * 0.75)


def vit_calib():
    x, y, _ = _vit_split()
    for i in range(200):
        yield x[i : i + 1], int(y[i])


def vit_eval():
    x, y, n = _vit_split()
    for i in range(n, len(x)):
        yield x[i : i + 1], int(y[i])


def models() -> dict[str, tuple[str, str, str]]:
    """name -> (source, calib, eval)."""
    sys.path.insert(0, str(REPO / "examples"))
    from zoo import ZOO

    mnv2 = next(m for m in ZOO if m.name == "mobilenet_v2_torch")
    return {
        "vit": (f"{HERE}:vit", f"{HERE}:vit_calib", f"{HERE}:vit_eval"),
        "digits": (f"{REPO / 'examples' / 'torch_digits.py'}:build", "digits:train", "digits:test"),
        "mobilenet_v2_torch": (mnv2.source, mnv2.calib, mnv2.calib),
    }


def edgeship(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "edgeship"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=REPO, check=False)


def measure(name: str, source: str, calib: str, evaluation: str, runs: int, work: Path) -> list[dict]:
    out = work / name
    t0 = time.perf_counter()
    exported = edgeship("-q", "export", source, "--to", "tflite", "--quant", "fp32,int8,int16x8", "--calib", calib,
                        "--eval", evaluation, "--out", str(out), "--force")
    seconds = time.perf_counter() - t0
    if not (out / "manifest.json").exists():
        return [{"model": name, "error": (exported.stderr or exported.stdout).strip().splitlines()[-1:]}]
    manifest = json.loads((out / "manifest.json").read_text())
    report_path = work / f"{name}.validate.json"
    checked = edgeship("validate", str(out), "--json", str(report_path), "--runs", str(runs))
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return [{"model": name, "error": (checked.stderr or checked.stdout).strip().splitlines()[-1:]}]
    rows = []
    by_path = {Path(a["path"]).name: a for a in manifest["artifacts"]}
    for r in report["artifacts"]:
        art = by_path.get(Path(r["artifact"]).name, {})
        acc = r.get("accuracy") or {}
        rows.append({
            "model": name, "recipe": r.get("recipe"), "status": r.get("status"),
            "delegation": r.get("delegation") or art.get("delegation"),
            "p50_ms": (r.get("latency") or {}).get("p50_ms"), "snr_db": acc.get("snr_db"), "cosine": acc.get("cosine"),
            "top1": acc.get("accuracy"), "float_top1": acc.get("reference_accuracy"),
            "agreement": acc.get("top1_agreement"), "export_s": round(seconds, 1),
            "float_ops": [w for w in art.get("warnings", []) if "stay float32" in w][:1],
        })
    return rows


def _f(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _deleg(d: dict | None) -> str:
    if not d or d.get("coverage") is None:
        return "—"
    return f"{d['coverage'] * 100:.0f}% ({d.get('delegated_ops')}/{d.get('total_ops')})"


def _pct(v) -> str:
    return "—" if v is None else f"{v * 100:.1f}" if v <= 1 else f"{v:.1f}"


def render(rows: list[dict], command: str, load: tuple[float, float]) -> str:
    out = [f"`{command}` (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end, {os.cpu_count()} cores)",
           "", ("| model | recipe | validate | delegated | p50 ms | SNR dB | cosine | top-1 % (float) | agree % "
                "| export s (all three) |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | | failed: {' '.join(r['error'])[:150]} | | | | | | | |")
            continue
        out.append(f"| {r['model']} | {r['recipe']} | {r['status']} | {_deleg(r['delegation'])} | {_f(r['p50_ms'], '.3f')} "
                   f"| {_f(r['snr_db'], '.1f')} | {_f(r['cosine'], '.4f')} | {_pct(r['top1'])} ({_pct(r['float_top1'])}) "
                   f"| {_pct(r['agreement'])} | {r['export_s']} |")
    notes = [f"- {r['model']} {r['recipe']}: {r['float_ops'][0]}" for r in rows if r.get("float_ops")]
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def main() -> int:
    known = models()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(known), help=f"comma-separated: {', '.join(known)}")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path, help="also write the table here")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"int16x8: unknown model {', '.join(unknown)}; have {', '.join(known)}", file=sys.stderr)
        return 2
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeship-int16x8-") as tmp:
        for n in names:
            rows += measure(n, *known[n], a.runs, Path(tmp))
            print(f"{n}: done", file=sys.stderr, flush=True)
    command = f".venv/bin/python bench/int16x8.py --models {','.join(names)} --runs {a.runs}"
    table = render(rows, command, (load0, os.getloadavg()[0]))
    print(table)
    if a.out:
        a.out.write_text(table)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
