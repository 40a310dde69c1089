"""Cross-layer equalization (Nagel et al., 2019, "Data-Free Quantization") of a float PyTorch model,
before any converter sees it, so it helps every route.

For two convolutions in a row, conv1 -> [ReLU | ReLU6] -> conv2 (conv2 plain or depthwise, conv1's
output used by conv2 alone), output channel i of conv1 is divided by s_i and input channel i of
conv2 multiplied by s_i, with s_i = sqrt(r1_i / r2_i) (r: the channel's largest |weight|). The
channels' weight ranges become equal, which per-tensor activation quantization (and per-channel
weights of depthwise convs) needs. ReLU commutes with a positive scale; ReLU6 does not (its cap
would move), so a ReLU6 between the two becomes a per-channel cap 6 / s_i: the float function is
the same up to rounding. BatchNorm is folded into the convolution before it first.
"""

from __future__ import annotations

import copy

from edgeship.data import has_batch_axis
from edgeship.errors import InputError, UnsupportedError
from edgeship.quantize import keras_bias, keras_equalize, keras_simulate
from edgeship.quantize.simulate import simulated_snr_db

ITERATIONS = 4
DEAD = 1e-6  # a channel whose range is under this fraction of its layer's largest is left as it is
MAX_SCALE = 1e4  # the most any channel is scaled by, all iterations together


def equalize(module):
    """A copy of `module` (eval mode) with BatchNorm folded and conv pairs equalized.
    Returns (new module, number of pairs equalized)."""
    import torch
    import torch.fx as fx
    from torch.fx.experimental.optimization import fuse

    module = copy.deepcopy(module).eval()
    gm = fuse(fx.symbolic_trace(module))  # folds conv -> BN
    modules = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        conv1 = _conv(node, modules)
        if conv1 is None or len(node.users) != 1:
            continue
        act = next(iter(node.users))
        kind = _activation(act, modules)
        if kind is None or len(act.users) != 1:
            continue
        conv2 = _conv(next(iter(act.users)), modules)
        if conv2 is None or conv2.in_channels != conv1.out_channels:
            continue
        if conv2.groups not in (1, conv2.in_channels):
            continue
        pairs.append((conv1, act, kind, conv2))
    caps = {}
    with torch.no_grad():
        for conv1, act, kind, conv2 in pairs:
            total = torch.ones(conv1.out_channels)
            for _ in range(ITERATIONS):
                r1 = conv1.weight.abs().flatten(1).amax(1)
                w2 = conv2.weight
                if conv2.groups == conv2.in_channels and conv2.groups > 1:  # depthwise: (C, 1, k, k)
                    r2 = w2.abs().flatten(1).amax(1)
                else:
                    r2 = w2.abs().transpose(0, 1).flatten(1).amax(1)
                # a dead channel (range under DEAD of its layer's largest) keeps its scale, and no channel
                # moves by more than MAX_SCALE over all iterations: clamping each iteration alone compounded
                # (1e4 four times over) on a near-zero range, and XNNPACK then refused the layer
                live = (r1 > DEAD * r1.max()) & (r2 > DEAD * r2.max())
                s = torch.where(live, torch.sqrt(r1 / r2.clamp_min(1e-30)), torch.ones_like(r1))
                s = (s / total).clamp(1 / MAX_SCALE, MAX_SCALE) * total  # total is 1 / (the product of s so far)
                _scale_out(conv1, 1 / s)
                _scale_in(conv2, s)
                total = total / s
            if kind == "relu6":
                caps[act.name] = 6.0 * total  # ReLU6(x) scaled by `total` per channel == min(ReLU(x'), 6 * total)
    for node in gm.graph.nodes:
        if node.name in caps:
            cap = caps[node.name].reshape(1, -1, 1, 1)
            name = f"cle_cap_{node.name}"
            gm.add_submodule(name, PerChannelCap(cap))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm, len(pairs)


def _scale_out(conv, factor):
    conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    if conv.bias is not None:
        conv.bias.mul_(factor)


def _scale_in(conv, factor):
    if conv.groups == conv.in_channels and conv.groups > 1:
        conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    else:
        conv.weight.mul_(factor.reshape(1, -1, *([1] * (conv.weight.dim() - 2))))


def _conv(node, modules):
    import torch

    if node is None or node.op != "call_module":
        return None
    m = modules.get(node.target)
    return m if isinstance(m, torch.nn.Conv2d) else None


def _activation(node, modules):
    import torch
    import torch.nn.functional as F

    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, torch.nn.ReLU6):
            return "relu6"
        if isinstance(m, torch.nn.ReLU):
            return "relu"
        if isinstance(m, torch.nn.Hardtanh) and m.min_val == 0.0 and m.max_val == 6.0:
            return "relu6"
    if node.op == "call_function":
        if node.target in (torch.relu, F.relu):
            return "relu"
        if node.target is F.relu6:
            return "relu6"
    return None


def _cap_class():
    import torch

    class PerChannelCap(torch.nn.Module):
        """ReLU with a per-channel upper bound: min(max(x, 0), cap)."""

        def __init__(self, cap):
            super().__init__()
            self.register_buffer("cap", cap.clone())

        def forward(self, x):
            return torch.minimum(torch.relu(x), self.cap)

    return PerChannelCap


def PerChannelCap(cap):  # noqa: N802 (a factory: torch is imported only when equalizing)
    return _cap_class()(cap)


MODES = ("off", "on", "auto")
# auto's first stage: the simulated int8 weakest-output SNR (quantize/simulate.py, on the first
# SIM_SAMPLES golden inputs) must rise by GATE_DB with CLE before auto converts both ways. Measured
# (bench/QUANT.md, "CLE auto"): +21.4 dB simulated on the planted ranges net (real: +10 dB and
# more), +43.5 on the fragile net; -1.3 dB on EfficientNet-Lite0 and -1.7 dB on the zoo's
# MobileNetV2 (real on EfficientNet-Lite0: -0.8 to -2.2 dB); 0 on the digits CNN. 1 dB sits above the simulation's
# disagreement with the real routes seen there (about 1 dB), so a real trial is run only where
# the simulation sees a clear gain.
GATE_DB = 1.0
SIM_SAMPLES = 32


class Plan:
    """--cle for one export: the equalized model (`equalized`, `pairs`) and auto's cheap first stage,
    `simulate(recipe)`: int8 simulated in torch without and with CLE. What is applied is decided by
    quantize/rewrites.py (on: applied; auto: a real trial only where the simulation gains GATE_DB).
    A Keras model gets the same rewrite and simulation in Keras (keras_equalize.py, keras_simulate.py).
    auto skips (`skipped` says why) a source that is neither an nn.Module nor a Keras model, an input
    without a batch axis, a module torch.fx cannot trace and a model with no pair to equalize."""

    def __init__(self, mode: str, model, inputs, reference, log=print):
        from dataclasses import replace

        if mode not in MODES:
            raise InputError(f"--cle must be one of {', '.join(MODES)}, got '{mode}'")
        self.mode, self.model, self.inputs, self.reference, self.log = mode, model, inputs, reference, log
        self.simulated: dict[int, dict] = {}  # activation bits -> the simulation's record
        self.skipped, self.pairs, self.equalized = None, 0, None
        if model.kind not in ("torch-module", "keras"):
            if mode == "auto":
                self.skipped = f"a {model.kind} model, not a PyTorch nn.Module or a Keras model"
                return
            raise UnsupportedError(f"cross-layer equalization (--cle {mode}) rewrites a PyTorch nn.Module or a "
                                   f"Keras model; '{model.name}' is a {model.kind} model", hint="pass --cle off")
        if mode == "auto" and not all(has_batch_axis(s.shape) for s in model.io.inputs):
            self.skipped = "an input without a batch axis (taken whole)"
            return
        keras = model.kind == "keras"
        try:
            if keras:  # the same rewrite in Keras (quantize/keras_equalize.py)
                eq, self.pairs = keras_equalize.equalize(model.obj, [a[:1] for a in inputs])
                self.equalized = keras_bias.as_model(model, eq) if self.pairs else None
            else:
                eq, self.pairs = equalize(model.obj)
                self.equalized = replace(model, obj=eq)
        except Exception as e:  # noqa: BLE001 - fx cannot trace it; a Keras clone fails
            why = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            what = "the Keras model cannot be cloned" if keras else "torch.fx cannot trace the module"
            if mode == "auto":
                self.skipped = f"{what} ({why})"
                log(f"cross-layer equalization skipped (--cle auto): {self.skipped}")
                return
            raise UnsupportedError(f"cross-layer equalization (--cle {mode}) could not rewrite '{model.name}': "
                                   f"{what}: {why}", hint="pass --cle off") from None
        if self.pairs == 0:
            if mode == "auto":
                self.skipped = ("no conv/dense -> [BN] -> [ReLU] -> conv/dense pair to equalize" if keras else
                                "no conv -> ReLU/ReLU6 -> conv pair to equalize")
            self.equalized = None
        log(f"cross-layer equalization: {self.pairs} conv pair(s) equalized (--cle {mode})")

    def simulate(self, recipe: str) -> dict:
        """The simulated int8 (int16 inputs for int16x8) weakest-output SNR without and with CLE, once per width."""
        bits = 16 if recipe == "int16x8" else 8
        if bits not in self.simulated:
            n = min(SIM_SAMPLES, int(self.inputs[0].shape[0]))
            inputs, reference = [a[:n] for a in self.inputs], [r[:n] for r in self.reference]
            simulated = keras_simulate.simulated_snr_db if self.model.kind == "keras" else simulated_snr_db
            without = simulated(self.model.obj, inputs, reference, 127, bits)
            with_ = simulated(self.equalized.obj, inputs, reference, 127, bits)
            self.simulated[bits] = {"snr_db_without": without, "snr_db_with": with_,
                                    "gain_db": round(with_ - without, 3), "threshold_db": GATE_DB,
                                    "samples": n, "activation_bits": bits}
        return self.simulated[bits]
