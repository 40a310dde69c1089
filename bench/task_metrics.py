"""Task metric vs SNR per format and recipe: where tensor metrics mislead.

    .venv/bin/python bench/task_metrics.py OUT_DIR

Trains the tests' detector and segmenter (tests/task_models.py: shapes drawn on scikit-learn's
sample photos; china.jpg trains and calibrates, flower.jpg evaluates), exports each to
onnx/tflite/pte x fp32/int8 (the detector: onnx/pte), validates every artifact with its task metric (map50 and map50_95
for the detector, miou for the segmenter) and prints one row per artifact: task metric (float ->
artifact), SNR and cosine of each output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import task_models  # noqa: E402


def edgeship(*args) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "edgeship"), "-q", *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # litert-torch's int8 calibration fails on the detector's box decoding ("histogram_cpu" not
    # implemented for 'Long'), so the detector goes to onnx and pte only
    jobs = [("detector", task_models.train_detector, {}, ["map50", "map50_95"], "onnx,pte"),
            ("segmenter", task_models.train_segmenter, {"max_objects": 1}, ["miou"], "onnx,tflite,pte")]
    rows = []
    for kind, train, kw, metrics, formats in jobs:
        source = task_models.write_source(train(), kind, out)
        cx, cb, cm = task_models.shapes(200, 0, 31, **kw)
        ex, eb, em = task_models.shapes(150, 1, 32, **kw)
        calib = task_models.save_npz(out / f"{kind}-calib.npz", cx, cb if kind == "detector" else cm)
        evaluation = task_models.save_npz(out / f"{kind}-eval.npz", ex, eb if kind == "detector" else em)
        bundle = out / kind
        edgeship("export", source, "--to", formats, "--quant", "fp32,int8", "--calib", calib, "--eval",
                 evaluation, "--golden-samples", "150", "--out", bundle, "--force")
        for metric in metrics:
            js = out / f"{kind}-{metric}.json"
            edgeship("validate", bundle, "--metric", metric, "--runs", "10", "--json", js)
            if not js.exists():
                continue
            for a in json.loads(js.read_text())["artifacts"]:
                acc = a.get("accuracy") or {}
                t = acc.get("task") or {}
                snr = ", ".join(f"{n} {m['snr_db']:.1f}" if m.get("snr_db") is not None else f"{n} inf"
                                for n, m in (acc.get("outputs") or {}).items())
                cos = ", ".join(f"{m['cosine']:.4f}" for m in (acc.get("outputs") or {}).values())
                rows.append((kind, a["artifact"], metric, t.get("reference"), t.get("value"), snr, cos, a["status"]))
    print("\n| model | artifact | metric | float | artifact | SNR dB per output | cosine per output | status |")
    print("|---|---|---|---:|---:|---|---|---|")
    for kind, art, metric, ref, val, snr, cos, status in rows:
        f = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"| {kind} | {art} | {metric} | {f(ref)} | {f(val)} | {snr} | {cos} | {status} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/edgeship-task-metrics"))
