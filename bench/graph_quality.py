"""Graph quality before/after edgeship's graph passes, side by side in one run (issue 11).

For each model x recipe (fp32, int8):
  before  the .pte as the stock pipeline makes it: torch.export (Keras: the four torch_passes
          cleanups edgeship had before), XNNPACKQuantizer for int8, XNNPACK's own partitioner;
          if lowering fails, portable kernels (what edgeship shipped before).
  after   edgeship's route (convert/torch_pte.py, convert/keras_pte.py) with its graph passes.
  tflite  edgeship's .tflite of the same model and recipe (LiteRT, XNNPACK delegate).
Columns: ops delegated %, XNNPACK ops (read back from the .pte), p50 ms (1 thread, warm-up,
median) and the .pte/.tflite ratio.

Models: MTCNN RNet/ONet with the mtcnn wheel's trained weights, in torch and Keras; Keras
MobileNetV2 (alpha 0.35 at 96x96, alpha 1.0 at 224x224; weights=None is fine for op counts and
latency). Calibration: crops of scikit-learn's two sample photos.

    nice .venv/bin/python bench/graph_quality.py [--models torch-rnet,keras-mnv2-96] [--runs 50]
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # mtcnn_nets

MODELS = ("torch-rnet", "torch-onet", "keras-rnet", "keras-onet", "keras-mnv2-96", "keras-mnv2-224")


def photo_crops(n: int, size: int, layout: str, seed: int = 0) -> np.ndarray:
    """Crops of scikit-learn's sample photos, scaled to [-1, 1]."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = images[i % len(images)]
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append((img[y : y + size, x : x + size].astype(np.float32) - 127.5) / 128.0)
    arr = np.stack(out)
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2)) if layout == "NCHW" else arr


def build_source(name: str, work: Path) -> tuple[str, str, int]:
    """(edgeship source string, layout, input size) of a bench model."""
    framework, net = name.split("-", 1)
    if framework == "torch":
        factory = work / f"{net}_factory.py"
        factory.write_text(f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nimport mtcnn_nets\n\n"
                           f"def build():\n    return mtcnn_nets.torch_net({net!r}), "
                           f"(mtcnn_nets.torch.from_numpy(mtcnn_nets.example({net!r})),)\n")
        import mtcnn_nets

        return f"{factory}:build", "NCHW", mtcnn_nets.INPUT_SIZE[net]
    path = work / f"{net}.keras"
    if net.startswith("mnv2"):
        import keras

        size = int(net.split("-")[1])
        keras.applications.MobileNetV2(weights=None, alpha=0.35 if size == 96 else 1.0,
                                       input_shape=(size, size, 3)).save(path)
        return str(path), "NHWC", size
    import mtcnn_nets

    mtcnn_nets.keras_net(net).save(path)
    return str(path), "NHWC", mtcnn_nets.INPUT_SIZE[net]


# ---------------------------------------------------------------------------------------------
# The "before" .pte: the stock pipeline


def stock_lower(program, examples, calib, recipe: str):
    """bytes of the .pte the stock pipeline gives: XNNPACK's partitioner, else portable kernels."""
    import executorch.kernels.quantized  # noqa: F401
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgeship.convert import torch_pte

    if recipe == "int8":
        program = torch.export.export(torch_pte.pt2e_quantize(program, examples, calib), tuple(examples))
    import copy

    try:
        edge = to_edge_transform_and_lower(copy.deepcopy(program), partitioner=[XnnpackPartitioner()])
    except Exception:
        edge = to_edge_transform_and_lower(copy.deepcopy(program), partitioner=[])
    return bytes(edge.to_executorch().buffer)


def before_torch(source: str, recipe: str, calib, out: Path) -> None:
    import torch

    from edgeship.convert.torch_common import example_tensors
    from edgeship.sources import load_model

    model = load_model(source)
    examples = example_tensors(model)
    program = torch.export.export(model.obj.eval(), tuple(examples))
    out.write_bytes(stock_lower(program, examples, calib, recipe))


def before_keras_child(job: dict) -> None:
    """Under KERAS_BACKEND=torch: the Keras graph with the cleanups edgeship had before."""
    import keras
    import torch

    from edgeship.convert import torch_passes as p
    from edgeship.convert.keras_pte import _as_torch_module
    from edgeship.convert.torch_common import quiet, to_tensors
    from edgeship.data import Dataset
    from edgeship.model import TensorSpec

    km = keras.models.load_model(job["model"], compile=False)
    x = np.load(job["calib"])["x"]
    examples = to_tensors([x[:1]])
    calib = Dataset("photos", [x], [TensorSpec("x", x[:1].shape)])
    module, _ = _as_torch_module(km, 1)
    with quiet():
        gm = torch.export.export(module, tuple(examples)).module()
        for fn in (p.remove_identity_conversions, p.strip_channels_last_hints, p.fold_constant_layout_ops,
                   p.matmul_add_to_linear):
            fn(gm)
        program = torch.export.export(gm, tuple(examples))
        Path(job["out"]).write_bytes(stock_lower(program, examples, calib, job["recipe"]))


def before_keras(source: str, recipe: str, calib_path: Path, out: Path) -> None:
    job = {"model": source, "recipe": recipe, "calib": str(calib_path), "out": str(out)}
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child failed")


# ---------------------------------------------------------------------------------------------
# Measuring


def pte_figures(path: Path) -> dict:
    from edgeship.runtime.standalone.executorch import inspect_artifact

    d = inspect_artifact(path)
    xnn = sum(o["count"] for o in d["ops"] if o["delegated"])
    return {"delegated": d["delegated_ops"] / d["total_ops"] if d["total_ops"] else 0.0, "xnnpack_ops": xnn,
            "kernel_ops": d["total_ops"] - xnn}


def p50(path: Path, x: np.ndarray, runs: int, warmup: int = 10) -> float:
    if path.suffix == ".pte":
        from edgeship.runtime.standalone.executorch import Runner
    else:
        from edgeship.runtime.standalone.tflite import Runner
    runner = Runner(path, threads=1)
    for _ in range(warmup):
        runner.run([x])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        runner.run([x])
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_model(name: str, recipes, runs: int, work: Path) -> list[dict]:
    from edgeship.convert import get_route
    from edgeship.convert.base import ConvertOptions
    from edgeship.data import load_data
    from edgeship.quantize.recipes import RECIPES
    from edgeship.sources import load_model

    source, layout, size = build_source(name, work)
    model = load_model(source)
    crops = photo_crops(64, size, layout)
    calib_path = work / f"{name}_calib.npz"
    np.savez(calib_path, x=crops)
    calib = load_data(str(calib_path), model.io)
    x = crops[:1]
    rows = []
    for recipe in recipes:
        row = {"model": name, "recipe": recipe}
        c = calib if recipe == "int8" else None
        before = work / f"{name}.{recipe}.before.pte"
        try:
            if name.startswith("torch"):
                before_torch(source, recipe, c, before)
            else:
                before_keras(source, recipe, calib_path, before)
            row["before"] = {**pte_figures(before), "p50": p50(before, x, runs)}
        except Exception as e:
            row["before"] = {"error": str(e)[:120]}
        for fmt in ("pte", "tflite"):
            out = work / f"{name}.{recipe}.{fmt}"
            try:
                convert = get_route(model.framework, fmt).load()
                convert(model, RECIPES[recipe], c, out, ConvertOptions())
                fig = pte_figures(out) if fmt == "pte" else {}
                row["after" if fmt == "pte" else "tflite"] = {**fig, "p50": p50(out, x, runs)}
            except Exception as e:
                row["after" if fmt == "pte" else "tflite"] = {"error": str(e)[:120]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    def f(d, k, fmt):
        return fmt.format(d[k]) if k in d else "err"

    head = ("| model | recipe | before: delegated | before: XNNPACK ops | before: p50 ms | after: delegated "
            "| after: XNNPACK ops | after: p50 ms | .tflite p50 ms | .pte/.tflite before | .pte/.tflite after |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        b, a, t = r["before"], r["after"], r["tflite"]
        ratio = lambda d: f"{d['p50'] / t['p50']:.2f}x" if "p50" in d and "p50" in t else "—"  # noqa: E731
        lines.append(f"| {r['model']} | {r['recipe']} | {f(b, 'delegated', '{:.0%}')} | {f(b, 'xnnpack_ops', '{}')} "
                     f"| {f(b, 'p50', '{:.3f}')} | {f(a, 'delegated', '{:.0%}')} | {f(a, 'xnnpack_ops', '{}')} "
                     f"| {f(a, 'p50', '{:.3f}')} | {f(t, 'p50', '{:.3f}')} | {ratio(b)} | {ratio(a)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--recipes", default="fp32,int8")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        before_keras_child(json.loads(args.child))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeship-graph-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench_model(name, args.recipes.split(","), args.runs, Path(tmp))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
