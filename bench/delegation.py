"""Delegation before and after the XNNPACK graph passes, on two model families edgeship was not tuned on:

  vit       a vision transformer from stock PyTorch modules (Conv2d patches, CLS token, learned
            positions, nn.TransformerEncoder(norm_first, gelu, batch_first) x4, LayerNorm, Linear),
            trained on scikit-learn's digits (8x8)
  text_cnn  a text CNN on token ids (Embedding -> three dilated Conv1d -> torch.max(x, 3) -> two
            Linear), trained on the digits read as 64 tokens of 17 grey levels

    .venv/bin/python bench/delegation.py [--before REV] [--runs 200] [--epochs 8] [--quant int8]

Both models are trained once here; the same weights are exported by the edgeship of REV (default: the
commit before the passes, extracted with `git archive`) and by this tree, with the Python API
(`edgeship.export(module, (x,), to=..., quant="fp32")`): delegation is the manifest's figure. Then
one process times the before .pte, the after .pte and the .tflite side by side (1 thread, runs
interleaved round-robin, p50 in ms) with edgeship's own runners, and runs each on the held-out quarter
(top-1). --quant int8: PT2E / litert-torch int8, calibrated on 32 training images.
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
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
BEFORE = "65ca2ee"  # main before the XNNPACK decomposition passes
CACHE = Path.home() / ".cache" / "edgeship" / "bench-delegation"  # trained weights, reused by reruns


class ViT(nn.Module):
    def __init__(self, d=64, heads=4, layers=4, patch=2, img=8, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(1, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.encoder(x)[:, 0]))


class TextCNN(nn.Module):
    def __init__(self, vocab=17, d=32, classes=10):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.convs = nn.ModuleList([nn.Conv1d(d, d, 3, dilation=r, padding=r) for r in (1, 2, 4)])
        self.fc1, self.fc2 = nn.Linear(d, 32), nn.Linear(32, classes)

    def forward(self, ids):
        x = self.emb(ids).transpose(1, 2)
        for conv in self.convs:
            x = torch.relu(conv(x))
        x = torch.max(x.unsqueeze(2), 3)[0].flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


MODELS = {"vit": ViT, "text_cnn": TextCNN}


def data(name: str):
    from sklearn.datasets import load_digits

    d = load_digits()
    if name == "vit":
        x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    else:
        x = torch.from_numpy(d.data.astype(np.int64))
    return x, torch.from_numpy(d.target)


def train(name: str, epochs: int, out: Path) -> dict:
    """Train (or take from the cache) and save weights + one held-out example to out/NAME.pt."""
    import shutil

    cached = CACHE / f"{name}-e{epochs}.pt"
    if cached.exists():
        shutil.copy(cached, out / f"{name}.pt")
        return {"model": name, "test_top1": torch.load(cached)["test_top1"]}
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = data(name)
    perm = torch.randperm(len(x))
    x, y = x[perm], y[perm]
    n = int(len(x) * 0.75)
    model = MODELS[name]()
    opt = torch.optim.AdamW(model.parameters(), 3e-3 if name == "vit" else 1e-2)
    for _ in range(epochs):
        model.train()
        for i in range(0, n, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[n:]).argmax(1) == y[n:]).float().mean().item() * 100
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "example": x[n:n + 1].clone(), "test_top1": round(acc, 1)}, cached)
    shutil.copy(cached, out / f"{name}.pt")
    return {"model": name, "test_top1": round(acc, 1)}


def split(name: str):
    """(32 calibration inputs from the training part, held-out inputs, held-out labels): train()'s split."""
    torch.manual_seed(0)
    x, y = data(name)
    perm = torch.randperm(len(x))
    x, y = x[perm], y[perm]
    n = int(len(x) * 0.75)
    return x[:32], x[n:], y[n:]


def export_side(work: Path, side: str, quant: str = "fp32") -> None:
    """In a child process whose `edgeship` is the tree under test: export both models."""
    import edgeship

    for name in MODELS:
        saved = torch.load(work / f"{name}.pt")
        model = MODELS[name]()
        model.load_state_dict(saved["state"])
        model.eval()
        to = "pte,tflite" if side == "after" else "pte"
        t0 = time.perf_counter()
        calib = split(name)[0].numpy() if quant != "fp32" else None
        bundle = edgeship.export(model, (saved["example"],), to=to, quant=quant, calib=calib,
                                 out=work / f"{side}-{name}", force=True, name=name, golden_samples=2)
        row = {"seconds": time.perf_counter() - t0}
        for a in bundle.artifacts:
            row[a["format"]] = {"path": str(bundle.path / a["path"]), "delegation": a.get("delegation"),
                                "warnings": a.get("warnings")}
        (work / f"{side}-{name}.json").write_text(json.dumps(row, default=str))


def _child(work: Path, side: str, tree: Path, quant: str = "fp32") -> None:
    """Run export_side with `edgeship` imported from `tree` (an extracted older commit, or this one)."""
    finder = next(Path(sys.prefix, "lib").glob("python3*/site-packages/__editable___edgeship_*_finder.py"))
    code = (
        "import sys, types\n"
        f"src = open({str(finder)!r}).read().replace({str(REPO)!r}, {str(tree)!r})\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'edgeship' not in getattr(f, '__module__', '')]\n"
        "mod = types.ModuleType('before_finder'); exec(compile(src, 'finder', 'exec'), mod.__dict__)\n"
        "mod.install()\n"
        "sys.meta_path.insert(0, sys.meta_path.pop())  # ahead of PathFinder\n"
        f"sys.path.insert(0, {str(REPO / 'bench')!r})\n"
        "import delegation, edgeship\n"
        f"assert edgeship.__file__.startswith({str(tree)!r}), edgeship.__file__\n"
        f"delegation.export_side(__import__('pathlib').Path({str(work)!r}), {side!r}, {quant!r})\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # cwd: not the repository, whose edgeship/ folder would shadow the tree under test
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=work,
                          check=False)
    if proc.returncode:
        raise SystemExit(f"{side} export failed: {proc.stderr.strip().splitlines()[-1:]}")


def time_side_by_side(paths: dict[str, str], feeds, runs: int) -> dict[str, float]:
    """p50 ms of each artifact, 1 thread, runs interleaved so that load hits all alike."""
    from edgeship.runtime.standalone import executorch as et_runner
    from edgeship.runtime.standalone import tflite as tfl_runner

    runners = {k: (et_runner if p.endswith(".pte") else tfl_runner).Runner(p, threads=1) for k, p in paths.items()}
    times = {k: [] for k in runners}
    for _ in range(10):
        for r in runners.values():
            r.run(feeds)
    for _ in range(runs):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.run(feeds)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: float(np.median(v)) for k, v in times.items()}


def held_out_top1(paths: dict[str, str], name: str) -> dict[str, float]:
    """Top-1 (%) of each artifact on the held-out quarter, one sample at a time."""
    from edgeship.runtime.standalone import executorch as et_runner
    from edgeship.runtime.standalone import tflite as tfl_runner

    _, x, y = split(name)
    out = {}
    for k, p in paths.items():
        runner = (et_runner if p.endswith(".pte") else tfl_runner).Runner(p, threads=1)
        hits = sum(int(np.argmax(runner.run([x[i:i + 1].numpy()])[0]) == int(y[i])) for i in range(len(x)))
        out[k] = 100.0 * hits / len(x)
    return out


def main() -> None:
    from edgeship.convert import torch_pte

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--quant", default="fp32", choices=("fp32", "int8"), help="the recipe exported (default fp32)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeship-delegation-") as tmp:
        work, old = Path(tmp), Path(tmp, "before-tree")
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        trained = [train(name, args.epochs, work) for name in MODELS]
        _child(work, "before", old, args.quant)
        _child(work, "after", REPO, args.quant)
        rows = []
        for t in trained:
            name = t["model"]
            before = json.loads((work / f"before-{name}.json").read_text())
            after = json.loads((work / f"after-{name}.json").read_text())
            example = torch.load(work / f"{name}.pt")["example"].numpy()
            paths = {"before": before["pte"]["path"], "after": after["pte"]["path"], "tflite": after["tflite"]["path"]}
            p50 = time_side_by_side(paths, [example], args.runs)
            top1 = held_out_top1(paths, name)
            # the before .pte counted as this tree counts (from the file, as inspect does); its own manifest
            # counted edge-graph nodes, kept for the notes
            recount = torch_pte.artifact_delegation(Path(before["pte"]["path"]).read_bytes())
            rows.append({**t, "before": recount, "before_manifest": before["pte"]["delegation"],
                         "after": after["pte"]["delegation"],
                         "tflite": after["tflite"]["delegation"], "p50": p50, "top1": top1,
                         "warnings": after["pte"]["warnings"]})
    table = render(rows, args)
    print(table)
    if args.out:
        args.out.write_text(table)


def _pct(d: dict | None) -> str:
    if not d or d.get("coverage") is None:
        return "—"
    parts = d.get("partitions")
    return f"{d['coverage'] * 100:.0f}% ({d['delegated_ops']}/{d['total_ops']}" + (
        f", {parts} partitions)" if parts is not None else ")")


def render(rows: list[dict], args) -> str:
    load = os.getloadavg()[0]
    out = [f"`.venv/bin/python bench/delegation.py --before {args.before} --runs {args.runs} --epochs {args.epochs}"
           f" --quant {args.quant}` (1 thread; load average {load:.1f} on {os.cpu_count()} cores while timing)", "",
           "| model | recipe | float top-1 | top-1 .pte before / after / .tflite | .pte before: delegated | "
           ".pte after: delegated | .tflite delegated | "
           "p50 ms .pte before | p50 ms .pte after | p50 ms .tflite | before / .tflite | after / .tflite |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["p50"]
        t = r["top1"]
        out.append(f"| {r['model']} | {args.quant} | {r['test_top1']:.1f}% | "
                   f"{t['before']:.1f}% / {t['after']:.1f}% / {t['tflite']:.1f}% | {_pct(r['before'])} | {_pct(r['after'])} | "
                   f"{_pct(r['tflite'])} | {p['before']:.3f} | {p['after']:.3f} | {p['tflite']:.3f} | "
                   f"{p['before'] / p['tflite']:.2f}x | {p['after'] / p['tflite']:.2f}x |")
    out.append("")
    for r in rows:
        m = r["before_manifest"] or {}
        out.append(f"- {r['model']} .pte before, its own manifest's figure (edge-graph nodes): {_pct(m)}")
        for side in ("before", "after"):
            d = r[side] or {}
            if d.get("fallback"):
                out.append(f"- {r['model']} .pte {side}: {d['fallback']}")
        for w in r["warnings"] or []:
            out.append(f"- {r['model']} .pte after, export warning: {w}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
