"""The float reference run (golden outputs) on the CPU and, when present, on CUDA.

    .venv/bin/python bench/reference_device.py [--n 10000] [--batch 256] [--repeats 3] [--threads 0]

Times edgeship's own reference run (edgeship/reference.py, the code `export --reference-device`
uses) over N random 224x224 inputs of MobileNetV2 (bench/mobilenet_v2_torch.py, randomly
initialised, 3.5 M parameters), batched. Prints one table with a CPU and a GPU column: the median of
--repeats runs per device, inputs/s, the CPU/GPU ratio and how far the GPU's outputs are from the
CPU's. Without a usable GPU the GPU column says what is missing (the GPU, or torch's CUDA build:
README, "GPU set-up"). Inputs are made in chunks, so
N=10,000 needs about 6 GB of host memory (the inputs) rather than a copy per device.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="inputs in the reference run")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)

    import torch

    from edgeship import reference
    from cuda_setup import cuda_missing
    from edgeship.data import Dataset
    from edgeship.sources import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(f"{REPO / 'bench' / 'mobilenet_v2_torch.py'}:build")
    spec = model.io.inputs[0]
    rng = np.random.default_rng(0)
    inputs = np.empty((args.n, *spec.shape[1:]), np.float32)
    for i in range(0, args.n, 1000):
        inputs[i : i + 1000] = rng.standard_normal(inputs[i : i + 1000].shape, dtype=np.float32)
    ds = Dataset("random", [inputs], model.io.inputs)
    missing = cuda_missing()
    devices = ["cpu"] + ([] if missing else ["cuda"])
    print(f"MobileNetV2 (torch), {args.n} inputs of {'x'.join(map(str, spec.shape[1:]))}, batch {args.batch}, "
          f"median of {args.repeats}; torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}), "
          f"{torch.get_num_threads()} CPU threads")
    medians, outputs, runs, names = {}, {}, {}, {}
    for device in devices:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outs, record = reference.run(model, ds, device, args.batch)
            times.append(time.perf_counter() - t0)
        outputs[device], medians[device], runs[device] = outs[0], statistics.median(times), times
        names[device] = record.get("name", "")
    gpu_missing = f"not measured: {missing}" if missing else None

    def col(device, label, fmt):
        if device in medians:
            return fmt(device)
        return gpu_missing if label == "median s" else "—"

    rows = [
        ("device", lambda d: d + (f" ({names[d]})" if names[d] else "")),
        ("median s", lambda d: f"{medians[d]:.2f}"),
        ("inputs/s", lambda d: f"{args.n / medians[d]:.0f}"),
        ("runs s", lambda d: ", ".join(f"{t:.2f}" for t in runs[d])),
    ]
    print("\n| | CPU | GPU |\n| --- | --- | --- |")
    for label, fmt in rows:
        print(f"| {label} | {col('cpu', label, fmt)} | {col('cuda', label, fmt)} |")
    if "cuda" in medians:
        diff = float(np.abs(outputs["cuda"] - outputs["cpu"]).max())
        print(f"| CPU/GPU | | {medians['cpu'] / medians['cuda']:.1f}x |")
        print(f"| max abs(GPU - CPU) | | {diff:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
