"""The .pte route with torch.fx's provenance records shared (the default) against torch's own deep
copies, on the zoo's unrolled LSTM (resemblyzer's speaker encoder), side by side in one process.

    .venv/bin/python bench/provenance.py --repeats 2            # fp32
    .venv/bin/python bench/provenance.py --repeats 1 --int8     # int8 (16 calibration chunks)

Prints each run's wall and CPU seconds for `torch_pte.export_pte` (export, XNNPACK passes,
quantization, lowering, serialization, the trial run), the medians and their ratio, and whether
both ways wrote the same bytes. Runs alternate (shared, copied, shared, ...) so that load drifts
over both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "zoo"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--int8", action="store_true", help="int8 (PT2E, 16 calibration chunks) instead of fp32")
    args = ap.parse_args()

    import os

    import numpy as np
    import torch
    import zoo_data
    from speaker_lstm import speaker_lstm

    from edgeship.convert import torch_pte
    from edgeship.convert.base import ConvertOptions
    from edgeship.convert.torch_common import shared_provenance
    from edgeship.data import Dataset
    from edgeship.model import TensorSpec
    from edgeship.quantize.recipes import get_recipe

    model = speaker_lstm().eval()
    samples = list(zoo_data.speaker_lstm())[:16]
    names = ("mels", "h", "c")
    examples = [torch.from_numpy(samples[0][n]) for n in names]
    calib = None
    if args.int8:
        arrays = [np.concatenate([s[n] for s in samples]) for n in names]
        calib = Dataset("speech", arrays, [TensorSpec(n, (1, *a.shape[1:]), "float32") for n, a in zip(names, arrays)])
    recipe = get_recipe("int8" if args.int8 else "fp32")
    ways = {"shared": shared_provenance, "copied": contextlib.nullcontext}
    times: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    written: dict[str, bytes] = {}
    print(f"speaker_lstm {recipe.name} .pte, load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("warm-up", "shared")] + [(r + 1, way) for r in range(args.repeats) for way in ways]
        for r, way in runs:  # the warm-up pays first-use costs (imports, kernels), not counted
            torch_pte.shared_provenance = ways[way]
            program = torch.export.export(model, tuple(examples))
            out = Path(tmp) / f"{way}.pte"
            wall, cpu = time.perf_counter(), time.process_time()
            torch_pte.export_pte(program, recipe, examples, calib, out, ConvertOptions(), source="torch.export")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if r != "warm-up":
                times[way].append((wall, cpu))
                written.setdefault(way, out.read_bytes())
            print(f"  run {r} {way:6s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  load {os.getloadavg()[0]:.1f}",
                  flush=True)
    med = {w: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for w, v in times.items()}
    for w, (wall, cpu) in med.items():
        print(f"median {w:6s} wall {wall:6.1f} s  cpu {cpu:6.1f} s")
    print(f"shared / copied: wall {med['shared'][0] / med['copied'][0]:.2f}x, cpu {med['shared'][1] / med['copied'][1]:.2f}x; "
          f"same bytes: {written['shared'] == written['copied']}")


if __name__ == "__main__":
    main()
