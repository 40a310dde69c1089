"""Calibration methods and recipes over the real-model zoo (examples/zoo): per model x format x
recipe/calibration, the weakest output's SNR and cosine against the float model, every output's
SNR, p50 (the recipe search's own timing: 1 thread, this host, in-process), size and conversion
time. Prints a Markdown table.

Each model's own data (examples/zoo/zoo_data.py, 32 samples of real photos or espeak-ng speech) is
split: the first 24 calibrate, the last 8 are held out and measured on. Rows per format: int8 with
each activation-range method the route has (quantize/calibration.py's route_methods), int8 with
the route's default method and bias correction (torch nn.Modules: quantize/bias_correction.py,
what `export`'s default --bias-correction auto tries), int16x8 where the route runs it, fp16. The
zoo's data carry no labels, so there is no task metric: SNR and cosine against the float model
are the measure. A conversion that fails is a row saying so.

  .venv/bin/python bench/zoo_quant.py [--only onet,speaker_lstm] [--formats tflite,pte,onnx]
      [--configs REGEX] [--out bench/ZOO_QUANT.md] [--json rows.json]

Run a few models per process (`--only`) to keep memory low; `--collect A.json,B.json` tabulates
rows earlier runs wrote (a later file's row replaces an earlier one of the same model, format and
configuration: a re-run of some rows with --configs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from zoo import FORMATS, ZOO  # noqa: E402

from edgeship.convert import ConvertOptions, get_route  # noqa: E402
from edgeship.data import load_data  # noqa: E402
from edgeship.quantize import get_recipe  # noqa: E402
from edgeship.quantize.bias_correction import correct  # noqa: E402
from edgeship.quantize.calibration import route_methods, run_artifact, score  # noqa: E402
from edgeship.quantize.recipe_search import p50  # noqa: E402
from edgeship.sources import load_model  # noqa: E402

CALIB = 24  # of the zoo's 32 samples; the other 8 are measured on


def configs(model, target: str) -> list[tuple[str, str, str | None, bool]]:
    """(label, recipe, calibration method, bias-corrected) for one route."""
    route = get_route(model.framework, target)
    methods = route_methods(route.source, target)
    out = [(f"int8 {m}", "int8", m, False) for m in methods]
    if model.kind == "torch-module":
        out.append((f"int8 {methods[0]} + BC", "int8", methods[0], True))
    if "int16x8" in route.recipes:
        out.append(("int16x8 minmax", "int16x8", "minmax", False))
    out.append(("fp16", "fp16", None, False))
    return out


def run_model(zm, formats: list[str], log, only_configs: str | None = None) -> list[dict]:
    model = load_model(zm.source)
    data = load_data(zm.calib, model.io)
    calib = data.take(CALIB)
    feeds = [data.sample(i) for i in range(CALIB, len(data))]
    per_sample = [model.run(s) for s in feeds]
    reference = [np.concatenate([o[k] for o in per_sample]) for k in range(len(per_sample[0]))]
    corrected = None
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"zooquant-{zm.name}-") as tmp:
        for target in formats:
            why = zm.expected_failure(target, "fp32")  # the format itself cannot work for this model
            if why:
                rows.append({"model": zm.name, "format": target, "config": "—", "error": f"not run: {why}"})
                continue
            convert = get_route(model.framework, target).load()
            for label, recipe, method, with_bc in configs(model, target):
                if only_configs and not re.search(only_configs, label):
                    continue
                subject = model
                if with_bc:
                    if corrected is None:
                        module, record = correct(model.obj, calib.arrays)
                        corrected = replace(model, obj=module)
                        log(f"{zm.name}: bias correction {record}")
                    subject = corrected
                path = Path(tmp) / f"{len(rows)}.{target}"
                row = {"model": zm.name, "format": target, "config": label}
                t0 = time.perf_counter()
                try:
                    convert(subject, get_recipe(recipe), calib if recipe != "fp16" else None, path,
                            ConvertOptions(calibration=method))
                    s = score(reference, run_artifact(path, target, feeds))
                    row.update(snr_db=s["snr_db"], cosine=s["cosine"], snr_db_per_output=s["snr_db_per_output"],
                               p50_ms=round(p50(path, target, feeds), 4), size_bytes=path.stat().st_size)
                except Exception as e:  # a route's failure is a row, not the end of the run
                    words = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
                    row["error"] = f"failed: {words}"
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                log(json.dumps(row))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | format | configuration | weakest SNR dB | weakest cosine | SNR per output dB | p50 ms | "
             "size KB | convert s |", "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['format']} | {r['config']} | {r['error']} |  |  |  |  |  |")
            continue
        per = " / ".join(f"{v:.1f}" for v in r["snr_db_per_output"])
        lines.append(f"| {r['model']} | {r['format']} | {r['config']} | {r['snr_db']:.2f} | {r['cosine']:.4f} | "
                     f"{per} | {r['p50_ms']:.3f} | {r['size_bytes'] / 1024:.0f} | {r.get('seconds', 0):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated zoo model names (default: all)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--configs", metavar="REGEX", help="only the configurations whose label matches (e.g. 'entropy')")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--out", type=Path, help="write the table here (Markdown)")
    ap.add_argument("--collect", help="comma-separated JSON files of earlier runs: tabulate their rows")
    args = ap.parse_args()
    if args.collect:
        merged: dict[tuple, dict] = {}  # a later file's row replaces an earlier one of the same model/format/config
        for f in args.collect.split(","):
            for r in json.loads(Path(f).read_text()):
                merged[(r["model"], r["format"], r["config"])] = r
        rows = list(merged.values())
    else:
        wanted = set(args.only.split(",")) if args.only else {m.name for m in ZOO}
        unknown = wanted - {m.name for m in ZOO}
        if unknown:
            sys.exit(f"unknown zoo model(s): {', '.join(sorted(unknown))}; "
                     f"the zoo has {', '.join(m.name for m in ZOO)}")
        rows = []
        for zm in (m for m in ZOO if m.name in wanted):
            rows += run_model(zm, args.formats.split(","), lambda s: print(s, flush=True), args.configs)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    text = table(rows)
    print(text)
    if args.out:
        about = __doc__.split("\n\n")[1]  # the docstring's second paragraph: the data and the rows
        args.out.write_text(f"# Calibration and recipes over the real-model zoo\n\n{about}\n\n{text}\n")


if __name__ == "__main__":
    main()
