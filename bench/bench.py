"""edgeship's benchmark: everything measured side by side in one run, printed as medians and ratios.

    .venv/bin/python bench/bench.py [--repeats 3] [--only startup,overhead,mobilenet] [--out FILE]

1. startup:   `edgeship --help` against `python -c pass`
2. overhead:  `edgeship export` against a bare script calling the same converter, same model and
              recipe (Keras MobileNetV2 -> .tflite fp32; torch MobileNetV2 -> .pte fp32), whole
              processes, imports included, runs interleaved
3. mobilenet: int8 against fp32, latency (1 thread, 10 warm-up, 50 runs, median of the p50s of
              --repeats agent runs) and size, per format, for Keras MobileNetV2 (weights=None) and
              the torch equivalent in bench/mobilenet_v2_torch.py; int8 calibrated on 200 crops
              of scikit-learn's sample photos.
4. first, harness, memory: see bench/runtime_bench.py (time to validate's first result against
              the bare runtime; harness overhead on 1,000 samples; peak memory of exports).
Targets (not asserted): --help < 0.5 s; export overhead < 10%; int8 >= 1.8x faster, >= 3.5x smaller;
validate of a .tflite starts in under 1 s, of a .pte within 1.3x of its floor; harness overhead < 10%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
_SCRIPT = Path(PY).parent / "edgeship"  # the console script users run
EDGESHIP = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "edgeship"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="true")

BARE_KERAS_TFLITE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1], compile=False)
data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
open(sys.argv[2], "wb").write(data)
"""

BARE_TORCH_PTE = """
import sys, runpy, torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
path, fn = sys.argv[1].rsplit(":", 1)
model, example = runpy.run_path(path)[fn]()
ep = torch.export.export(model.eval(), tuple(example))
pte = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
open(sys.argv[2], "wb").write(pte.buffer)
"""


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def interleaved(commands: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Median wall time per command, the commands alternating so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(timed(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_startup(repeats: int) -> list[str]:
    m = interleaved({"python -c pass": [PY, "-c", "pass"], "edgeship --help": EDGESHIP + ["--help"]}, repeats)
    ratio = m["edgeship --help"] / m["python -c pass"]
    return [
        "## Start-up (median of %d)" % repeats, "",
        "| command | median s |", "| --- | --- |",
        *(f"| `{k}` | {v:.3f} |" for k, v in m.items()),
        "", f"`edgeship --help` / `python -c pass` = {ratio:.2f}x (target: --help under 0.5 s)", "",
    ]


def calibration_images(n: int, layout: str, path: Path) -> Path:
    """n random 224x224 crops (with flips) of scikit-learn's two sample photos, scaled to [-1, 1]."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427x640 RGB photos
    rng = np.random.default_rng(0)
    crops = []
    for i in range(n):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - 224), rng.integers(0, img.shape[1] - 224)
        crop = img[y : y + 224, x : x + 224].astype(np.float32) / 127.5 - 1.0
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    arr = np.stack(crops)
    if layout == "NCHW":
        arr = arr.transpose(0, 3, 1, 2)
    np.savez(path, arr)
    return path


def keras_mobilenet(path: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.MobileNetV2(weights=None).save(path)
    return path


def bench_overhead(tmp: Path, keras_src: Path, torch_src: str, repeats: int) -> list[str]:
    rows = []
    cases = [
        ("Keras MobileNetV2 -> .tflite fp32", str(keras_src), "tflite", BARE_KERAS_TFLITE),
        ("torch MobileNetV2 -> .pte fp32", torch_src, "pte", BARE_TORCH_PTE),
    ]
    for label, src, fmt, bare in cases:
        cmds = {
            "bare": [PY, "-c", bare, src, str(tmp / f"bare.{fmt}")],
            "edgeship": EDGESHIP + ["-q", "export", src, "--to", fmt, "--quant", "fp32", "--golden-samples", "8",
                                    "--out", str(tmp / f"ovh_{fmt}"), "--force"],
        }
        m = interleaved(cmds, repeats)
        rows.append(f"| {label} | {m['bare']:.1f} | {m['edgeship']:.1f} | {(m['edgeship'] / m['bare'] - 1) * 100:+.1f}% |")
    return ["## Export overhead (whole processes, median of %d)" % repeats, "",
            "| case | bare converter s | edgeship export s | overhead |", "| --- | --- | --- | --- |",
            *rows, "", "(target: under 10%)", ""]


def bench_mobilenet(tmp: Path, keras_src: Path, torch_src: str, repeats: int) -> list[str]:
    from edgeship.bundle import read_bundle
    from edgeship.runtime.local import LocalDevice

    device = LocalDevice()
    lines = ["## MobileNetV2 224x224, int8 against fp32 (host, 1 thread, 10 warm-up + 50 runs; "
             f"median p50 of {repeats} runs)", "",
             "| source | format | fp32 ms | int8 ms | speed-up | fp32 MB | int8 MB | smaller | int8 delegated |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, src, layout in (("Keras", str(keras_src), "NHWC"), ("torch", torch_src, "NCHW")):
        calib = calibration_images(200, layout, tmp / f"calib_{layout}.npz")
        out = tmp / f"mnv2_{label}"
        timed(EDGESHIP + ["-q", "export", src, "--to", "tflite,pte", "--quant", "fp32,int8", "--calib", str(calib),
                          "--golden-samples", "8", "--out", str(out), "--force", "--name", "mnv2"])
        bundle = read_bundle(out)
        golden = bundle.golden()
        one = [a[:1] for a in golden.inputs]
        by = {(a["format"], a["recipe"]): a for a in bundle.artifacts}
        for fmt in ("tflite", "pte"):
            p50 = {}
            for recipe in ("fp32", "int8"):
                rec = by[(fmt, recipe)]
                runs = []
                for _ in range(repeats):
                    r = device.run_artifact(bundle.artifact_path(rec), one, rec["io"], threads=1, warmup=10, runs=50)
                    if not r.ok:
                        sys.exit(f"{rec['path']}: {r.error}")
                    runs.append(r.result["latency"]["p50_ms"])
                p50[recipe] = statistics.median(runs)
            f32, i8 = by[(fmt, "fp32")], by[(fmt, "int8")]
            cov = (i8.get("delegation") or {}).get("coverage")
            lines.append(
                f"| {label} | {fmt} | {p50['fp32']:.2f} | {p50['int8']:.2f} | {p50['fp32'] / p50['int8']:.2f}x | "
                f"{f32['size_bytes'] / 1e6:.2f} | {i8['size_bytes'] / 1e6:.2f} | "
                f"{f32['size_bytes'] / i8['size_bytes']:.2f}x | {'—' if cov is None else f'{cov * 100:.0f}%'} |")
    return lines + ["", "(targets: int8 at least 1.8x faster and 3.5x smaller than fp32)", ""]


def memory_cases(tmp: Path, keras_src: Path, torch_src: str, digits: Path) -> list:
    """(label, edgeship export command, model fp32 size in MB) for the peak-memory table."""
    from edgeship.bundle import read_bundle

    digits_mb = next(a["size_bytes"] for a in read_bundle(digits).artifacts
                     if a["format"] == "tflite" and a["recipe"] == "fp32") / 1e6
    mnv2_mb = 3_538_984 * 4 / 1e6  # MobileNetV2's parameters in float32
    cases = []
    for label, src, fmt, mb in (("torch digits CNN -> .tflite,.pte fp32", f"{REPO / 'examples' / 'torch_digits.py'}:build",
                                 "tflite,pte", digits_mb),
                                ("Keras MobileNetV2 -> .tflite fp32", str(keras_src), "tflite", mnv2_mb),
                                ("torch MobileNetV2 -> .pte fp32", torch_src, "pte", mnv2_mb)):
        cases.append((label, EDGESHIP + ["-q", "export", src, "--to", fmt, "--quant", "fp32", "--golden-samples", "8",
                                         "--out", str(tmp / f"mem_{len(cases)}"), "--force"], mb))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--startup-repeats", type=int, default=15)
    ap.add_argument("--only", default="startup,first,harness,memory,overhead,mobilenet")
    ap.add_argument("--out", type=Path, help="also write the tables (Markdown) here")
    args = ap.parse_args()
    only = set(args.only.split(","))
    lines = [f"# edgeship benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python "
             f"{sys.version.split()[0]})", ""]
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        tmp = Path(tmp)
        if "startup" in only:
            lines += bench_startup(args.startup_repeats)
            print("\n".join(lines), flush=True)
        if only & {"first", "harness", "memory"}:
            import runtime_bench as rb

            bundle = rb.digits_bundle(tmp, EDGESHIP, ENV, REPO)
            for part_name, fn in (("first", rb.bench_first), ("harness", rb.bench_harness)):
                if part_name in only:
                    part = fn(bundle, PY, EDGESHIP, ENV, REPO, args.repeats)
                    print("\n".join(part), flush=True)
                    lines += part
        if only & {"overhead", "mobilenet", "memory"}:
            keras_src = keras_mobilenet(tmp / "mobilenet_v2.keras")
            torch_src = f"{REPO / 'bench' / 'mobilenet_v2_torch.py'}:build"
            if "overhead" in only:
                part = bench_overhead(tmp, keras_src, torch_src, args.repeats)
                print("\n".join(part), flush=True)
                lines += part
            if "memory" in only:
                part = rb.bench_memory(memory_cases(tmp, keras_src, torch_src, bundle), PY, ENV, REPO)
                print("\n".join(part), flush=True)
                lines += part
            if "mobilenet" in only:
                part = bench_mobilenet(tmp, keras_src, torch_src, args.repeats)
                print("\n".join(part), flush=True)
                lines += part
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
