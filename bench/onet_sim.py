"""Where ONet's weakest output (output_0, the box offsets) loses SNR: a host simulation in torch of
the quantization the routes apply (weights symmetric per output channel, round-to-nearest or GPTQ;
activations asymmetric per tensor, min-max ranges from the calibration crops), one source of error
at a time, on the 32 calibration crops (zoo_data.onet, the CLI's golden) and on 64 held-out crops.
Also: how far the box head amplifies noise in its input (sum_j |w_j x_j| / |y - b|, the median per
output), and what share of the held-out box values fall outside the calibration crops' range.

  .venv/bin/python bench/onet_sim.py [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "zoo"))

import onet  # noqa: E402
import zoo_data  # noqa: E402

from edgeship.metrics import snr_db  # noqa: E402
from edgeship.quantize.bias_correction import fake_quant_weight  # noqa: E402
from edgeship.quantize.weight_rounding import round_weights  # noqa: E402


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    net, _ = onet.build()
    crops = zoo_data.face_crops(96, 48)
    data = {"calib": torch.from_numpy(crops[:32]), "held out": torch.from_numpy(crops[32:])}
    weights = [n for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    tensors = [n for n, m in net.named_modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.PReLU))]  # max pools keep their scale
    ranges = {}
    modules = dict(net.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, a, o, n=n: ranges.__setitem__(
        n, (min(float(o.min()), 0.0), max(float(o.max()), 0.0)))) for n in tensors]
    with torch.no_grad():
        net(data["calib"])
    for h in hooks:
        h.remove()
    with torch.no_grad():
        reference = {k: net(x) for k, x in data.items()}
    gptq_net, _ = round_weights(net, [crops[:32]], 127)

    def snrs(model, quantized_tensors, bits=8):
        mods = dict(model.named_modules())

        def fq(n):
            def hook(m, a, o):
                lo, hi = ranges[n]
                scale = (hi - lo) / (2**bits - 1)
                zero = round(-lo / scale)
                return (torch.clamp(torch.round(o / scale) + zero, 0, 2**bits - 1) - zero) * scale
            return hook

        hs = [mods[n].register_forward_hook(fq(n)) for n in quantized_tensors]
        with torch.no_grad():
            out = {k: [snr_db(r.numpy(), o.numpy()) for r, o in zip(reference[k], model(x))] for k, x in data.items()}
        for h in hs:
            h.remove()
        return out

    def rtn(only=None):
        model = copy.deepcopy(net)
        with torch.no_grad():
            for n, m in model.named_modules():
                if n in weights and (only is None or n == only):
                    m.weight.copy_(fake_quant_weight(m.weight, 127))
        return model

    rows = [("weights int8, round-to-nearest, all layers", snrs(rtn(), [])),
            ("weights int8, GPTQ, all layers", snrs(gptq_net, [])),
            ("weights RTN + activations int16", snrs(rtn(), tensors, 16)),
            ("weights GPTQ + activations int16", snrs(gptq_net, tensors, 16)),
            ("weights RTN + activations int8", snrs(rtn(), tensors)),
            ("weights GPTQ + activations int8", snrs(gptq_net, tensors)),
            ("weights GPTQ + activations int8 but the box output's", snrs(gptq_net, [t for t in tensors if t != "dense6_2"]))]
    rows += [(f"only {n}'s weights int8 (RTN)", snrs(rtn(n), [])) for n in weights]
    rows += [(f"only {n}'s output int8", snrs(net, [n])) for n in tensors]

    w, b = net.dense6_2.weight, net.dense6_2.bias
    feats = {}
    hook = net.prelu5.register_forward_hook(lambda m, a, o: feats.__setitem__("x", o))
    with torch.no_grad():
        net(data["held out"])
        terms = (feats["x"].unsqueeze(1) * w.unsqueeze(0)).abs().sum(-1)
        gain = (terms / (reference["held out"][0] - b).abs()).median(0).values
    hook.remove()
    lo, hi = reference["calib"][0].min(), reference["calib"][0].max()
    held = reference["held out"][0]
    outside = float(((held < lo) | (held > hi)).float().mean())
    clipped = snr_db(held.numpy(), held.clamp(lo, hi).numpy())

    lines = ["| quantized | calib: box | calib: landmarks | calib: prob | held out: box | held out: landmarks "
             "| held out: prob |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in s["calib"] + s["held out"]) + " |")
    lines += ["", f"box head (dense6_2) on the held-out crops: median sum_j |w_j x_j| / |y - b| per output = "
              f"{', '.join(f'{g:.1f}' for g in gain.tolist())}",
              f"held-out box values outside the calibration crops' range [{float(lo):.3f}, {float(hi):.3f}]: "
              f"{outside * 100:.1f}%; clipping them to it, alone: {clipped:.2f} dB"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"`.venv/bin/python bench/onet_sim.py`\n\n{text}\n")


if __name__ == "__main__":
    main()
