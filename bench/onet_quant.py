"""MTCNN's ONet (facenet-pytorch's trained weights, examples/zoo/onet.py) per format x recipe x
calibration x bias correction / CLE / GPTQ weight rounding: the weakest output's SNR (dB, against the float model) and
each output's SNR (box offsets, landmarks, face probability). Calibrated on the zoo's 32 face
crops (examples/zoo/zoo_data.py:onet, the CLI's --calib) and measured on 64 other crops of the
same photos (held out); the weakest output is also scored on the calibration crops, which is what
`edgeship export --calib examples/zoo/zoo_data.py:onet` keeps as golden vectors. Prints a Markdown table.

  .venv/bin/python bench/onet_quant.py [--formats tflite,onnx,pte] [--only REGEX] [--calib-crops N]
      [--model onet|mobilenet_v2_torch] [--out bench/ONET.md]

--model mobilenet_v2_torch runs the same rows on the zoo's torchvision MobileNetV2 (ImageNet crops),
to see that what helps ONet does not lower another model.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "zoo"))

import zoo_data  # noqa: E402

from edgeship.convert import ConvertOptions, get_route  # noqa: E402
from edgeship.data import Dataset  # noqa: E402
from edgeship.quantize import get_recipe  # noqa: E402
from edgeship.quantize.bias_correction import correct, weight_qmax  # noqa: E402
from edgeship.quantize.calibration import route_methods, run_artifact, samples_of, score  # noqa: E402
from edgeship.quantize.equalize import equalize  # noqa: E402
from edgeship.quantize.weight_rounding import round_weights  # noqa: E402
from edgeship.sources import load_model  # noqa: E402

MODELS = {  # name -> (source, crops(n): the zoo's preprocessing; the first 32 are zoo_data.<name>'s)
    "onet": (str(ROOT / "examples/zoo/onet.py:build"), lambda n: zoo_data.face_crops(n, 48)),
    "mobilenet_v2_torch": (str(ROOT / "examples/zoo/mobilenet_v2_torch.py:build"),
                           lambda n: zoo_data.imagenet_photos(n, 128)),
}


def configs_for(target: str) -> list[tuple[str, str, str, bool, bool, bool]]:
    """(label, recipe, calibration, CLE, BC, GPTQ weight rounding) rows for one format."""
    rows = []
    for method in route_methods("torch", target):
        rows.append((f"int8 {method}", "int8", method, False, False, False))
        rows.append((f"int8 {method} + BC", "int8", method, False, True, False))
        rows.append((f"int8 {method} + GPTQ", "int8", method, False, False, True))
    default = route_methods("torch", target)[0]
    rows.append((f"int8 {default} + CLE", "int8", default, True, False, False))
    rows.append((f"int8 {default} + CLE + BC", "int8", default, True, True, False))
    rows.append((f"int8 {default} + GPTQ + BC", "int8", default, False, True, True))
    if "int16x8" in get_route("torch", target).recipes:
        rows.append((f"int16x8 {default}", "int16x8", default, False, False, False))
        rows.append((f"int16x8 {default} + BC", "int16x8", default, False, True, False))
        rows.append((f"int16x8 {default} + GPTQ", "int16x8", default, False, False, True))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="tflite,onnx,pte")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--only", help="keep the configurations whose label matches this regex")
    ap.add_argument("--model", default="onet", choices=sorted(MODELS), help="a zoo model (default: onet)")
    ap.add_argument("--calib-crops", type=int, default=zoo_data.SAMPLES,
                    help="calibration crops (default: the zoo's 32, zoo_data.onet)")
    args = ap.parse_args()
    source, crops_of = MODELS[args.model]
    model = load_model(source)
    n = args.calib_crops
    crops = crops_of(n + 64)  # one seeded generator: the first 32 are zoo_data.<model>'s
    calib_x, eval_x = crops[:n], crops[n:]  # the 64 crops after the calibration ones are held out
    calib = Dataset(f"zoo_data.{args.model}" if n == zoo_data.SAMPLES else f"{n} crops", [calib_x], model.io.inputs)
    reference = model.run([eval_x])
    feeds = samples_of([eval_x])
    calib_reference, calib_feeds = model.run([calib_x]), samples_of([calib_x])
    eq_module, pairs = equalize(model.obj)
    eq = replace(model, obj=eq_module)
    corrected = {}
    rounded = {}
    rows = []

    def gptq_rounded(base, target, recipe):
        key = weight_qmax(target, recipe)
        if key not in rounded:
            module, record = round_weights(base.obj, calib.arrays, key)
            rounded[key] = replace(base, obj=module)
            print(f"GPTQ rounding (weights [-{key}, {key}]): {record}", flush=True)
        return rounded[key]

    def bias_corrected(base, with_cle, target, recipe):
        qmax, bits = weight_qmax(target, recipe), 16 if recipe == "int16x8" else 8
        key = (id(base), qmax, bits)
        if key not in corrected:
            module, _ = correct(base.obj, calib.arrays, qmax, bits)
            corrected[key] = replace(base, obj=module)
        return corrected[key]

    with tempfile.TemporaryDirectory() as tmp:
        for target in args.formats.split(","):
            convert = get_route("torch", target).load()
            configs = configs_for(target)
            if args.only:
                configs = [c for c in configs if re.search(args.only, c[0])]
            for label, recipe, method, with_cle, with_bc, with_gptq in configs:
                subject = eq if with_cle else model
                if with_gptq:
                    subject = gptq_rounded(subject, target, recipe)
                if with_bc:
                    subject = bias_corrected(subject, with_cle, target, recipe)
                path = Path(tmp) / f"{len(rows)}.{target}"
                t0 = time.perf_counter()
                try:
                    convert(subject, get_recipe(recipe), calib, path, ConvertOptions(calibration=method))
                except Exception as e:  # a route's failure is a row, not the end of the run
                    rows.append((target, label, f"failed: {str(e).splitlines()[-1][:80]}", "", *[""] * len(reference), ""))
                    print(" | ".join(rows[-1]), flush=True)
                    continue
                on_calib = score(calib_reference, run_artifact(path, target, calib_feeds))
                s = score(reference, run_artifact(path, target, feeds))
                rows.append((target, label, f"{on_calib['snr_db']:.2f}", f"{s['snr_db']:.2f}",
                             *(f"{v:.2f}" for v in s["snr_db_per_output"]), f"{time.perf_counter() - t0:.0f}"))
                print(" | ".join(rows[-1]), flush=True)
    lines = [f"{args.model}, calibrated on {len(calib_x)} crops ({calib.name}), measured "
             f"on {len(eval_x)} held-out crops; CLE equalized {pairs} pairs; BC: bias correction "
             "(quantize/bias_correction.py) on the calibration crops; GPTQ: data-aware weight rounding (quantize/weight_rounding.py) on the "
             "calibration crops.", "",
             "| format | configuration | weakest SNR dB, calibration crops (the CLI's golden) | weakest SNR dB, "
             "held out | " + " | ".join(f"output_{k}, held out" for k in range(len(reference))) + " | export s |",
             "|---|---|---:|---:|" + "---:|" * len(reference) + "---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        only = f" --only '{args.only}'" if args.only else ""
        only += f" --calib-crops {n}" if n != zoo_data.SAMPLES else ""
        only += f" --model {args.model}" if args.model != "onet" else ""
        args.out.write_text(f"# {args.model}: the weakest output per recipe\n\n`.venv/bin/python bench/onet_quant.py "
                            f"--formats {args.formats}{only}`\n\n{text}\n")


if __name__ == "__main__":
    main()
