"""Why bench/QUANT.md's first .pte int8 rows were at 3.9 dB (and bias correction lifted them only to
4.9 dB) while the simulation behind bias correction predicts ~16 dB: issue 13's localisation.

EfficientNet-Lite0's 1280-d embedding (bench/models/efficientnet_lite0.py), 128 calibration / 64
held-out photo crops (bench/models/photos.py), the .pte route's int8 (symmetric per-channel
weights, per-tensor activations, --calibration METHOD), quantized two ways that differ in one thing:

  stock   XNNPACKQuantizer as ExecuTorch ships it: it fuses only ReLU into a conv, so for
          conv -> ReLU6 (hardtanh 0..6) it puts a quantize on the conv's raw output, then the clamp
          on its own, then a second quantize
  fused   edgeship's ClampFusingQuantizer (convert/xnnpack_quant_patterns.py, the route's
          quantizer since commit 997fbd5): conv -> hardtanh is one pattern, observed after the clamp

Per way and per model (as is, and bias-corrected with quantize/bias_correction.py): SNR and cosine
of the host q/dq simulation (the PT2E graph run by torch) and of the lowered .pte (ExecuTorch,
XNNPACK), XNNPACK ops delegated, p50 (1 thread). For the stock way it also measures the clamps quantized
apart from their conv: the int8 step of each clamp's output against the step its [0, 6] needs.

  .venv/bin/python bench/pte_clamp_ab.py [--calibration mse] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))

import photos

from edgeship.convert.torch_common import exported_program
from edgeship.convert.torch_pte import lower_with_fallback, pt2e_quantize
from edgeship.convert.xnnpack_passes import prepare_for_xnnpack
from edgeship.convert.xnnpack_quant_patterns import clamp_fusing_quantizer
from edgeship.data import Dataset
from edgeship.quantize.bias_correction import correct
from edgeship.quantize.calibration import pt2e_config, run_artifact, samples_of, score
from edgeship.sources import load_model

SOURCE = "bench/models/efficientnet_lite0.py:build"


def quantizer(way: str, method: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = pt2e_config(get_symmetric_quantization_config(is_per_channel=True), method)
    return (XNNPACKQuantizer() if way == "stock" else clamp_fusing_quantizer()).set_global(config)


def preclamp_steps(gm) -> list[tuple[str, float, float]]:
    """(clamp, int8 step of the clamp's quantized output, (hi - lo) / 255 of its own [lo, hi]) per
    hardtanh that reads a dequantized tensor, i.e. a clamp quantized apart from its conv."""
    import torch

    q = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.hardtanh.default:
            continue
        after = [u for u in node.users if u.target == q]
        if getattr(node.args[0], "target", None) != dq or not after:
            continue
        lo, hi = (float(a) for a in node.args[1:3])
        out.append((node.name, float(after[0].args[1]), (hi - lo) / 255))
    return out


def p50(path: Path, feeds) -> float:
    from edgeship.convert.tflite_common import quiet_native_output
    from edgeship.runtime.standalone.executorch import Runner
    from edgeship.runtime.standalone.timing import measure

    with quiet_native_output():
        runner = Runner(str(path), None, threads=1)
    return float(measure(runner.run, feeds[:4], warmup=3, runs=20)["p50_ms"])


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--calibration", default="mse")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    model = load_model(SOURCE)
    calib_x = np.concatenate(list(photos.calib()))
    eval_x = np.concatenate(list(photos.evaluation()))
    calib = Dataset("photos:calib", [calib_x], model.io.inputs)
    reference = model.run([eval_x])
    feeds = samples_of([eval_x])
    examples = (torch.zeros(1, 3, 224, 224),)
    corrected, record = correct(model.obj, [calib_x], 127)
    subjects = {"as is": model.obj, "+ BC": corrected}
    rows, steps = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in ("stock", "fused"):
            for label, module in subjects.items():
                t0 = time.perf_counter()
                program, _ = prepare_for_xnnpack(exported_program(module.eval(), examples), examples)
                gm = pt2e_quantize(program, examples, calib, quantizer=quantizer(way, args.calibration))
                with torch.no_grad():
                    sim = [np.concatenate([gm(torch.from_numpy(f[0])).numpy() for f in feeds])]
                if label == "as is":
                    steps[way] = preclamp_steps(gm)
                buffer, delegation = lower_with_fallback(exported_program(gm, examples), examples)
                path = Path(tmp) / f"{way}-{len(rows)}.pte"
                path.write_bytes(buffer)
                s_sim, s_pte = score(reference, sim), score(reference, run_artifact(path, "pte", feeds))
                rows.append((way, f"int8 {args.calibration} {label}", f"{s_sim['snr_db']:.2f}", f"{s_sim['cosine']:.4f}",
                             f"{s_pte['snr_db']:.2f}", f"{s_pte['cosine']:.4f}",
                             f"{delegation['delegated_ops']}/{delegation['total_ops']}",
                             f"{p50(path, feeds):.2f}", f"{time.perf_counter() - t0:.0f}"))
                print(" | ".join(rows[-1]), flush=True)
    lines = [(f"EfficientNet-Lite0 embedding, {len(calib_x)} calibration / {len(eval_x)} held-out crops; BC: "
              f"{record['layers']} layers on {record['samples']} crops."), "",
             ("| quantizer | configuration | q/dq SNR dB | q/dq cosine | .pte SNR dB | .pte cosine | XNNPACK ops "
              "delegated | p50 ms | s |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    for way, found in steps.items():
        ratios = sorted(b / a for _, b, a in found)
        if ratios:
            worst = max(found, key=lambda t: t[1] / t[2])
            lines += ["", (f"{way}: {len(found)} ReLU6 clamps quantized apart from their conv; the int8 step of each "
                           f"clamp's output (the range observed on the conv's raw output, shared through the clamp) is "
                           f"{ratios[0]:.1f}x / {np.median(ratios):.1f}x / {ratios[-1]:.1f}x (min / median / max; max "
                           f"at {worst[0]}: {worst[1]:.4f}) the step its own [0, 6] needs ({worst[2]:.4f})")]
        else:
            lines += ["", f"{way}: no ReLU6 clamp runs between two quantized tensors (each fused into its conv)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"`.venv/bin/python bench/pte_clamp_ab.py --calibration {args.calibration}`\n\n{text}\n")


if __name__ == "__main__":
    main()
