"""Integer quantization simulated in torch on a float nn.Module: what the converters' int8 does to
each conv/linear, without converting. Shared by bias correction (which measures the output-mean
shift it causes) and CLE's auto (which asks whether equalizing would raise the simulated SNR enough
to be worth converting twice).

The simulation quantizes what the converters quantize: every Conv1d/Conv2d/Linear's weights
symmetric per output channel (int8 [-127, 127]), and each such layer's input per tensor with
min-max ranges (int8, or int16 for int16x8). BatchNorm is folded into the convolution before it
first (`folded`), as the converters fold it, so the weights simulated are the weights they quantize.
"""

from __future__ import annotations

import copy

import numpy as np

from edgeship.metrics import snr_db
from edgeship.sources import flatten_outputs

CHUNK = 32  # samples per forward pass of the simulation


def fake_quant_weight(w, qmax: int):
    """Symmetric per-output-channel rounding, as XNNPACK's, litert-torch's and onnxruntime's
    quantizers do it: scale = max|w| / qmax per channel, values in [-qmax, qmax]."""
    import torch

    absmax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
    scale = (absmax / qmax).reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def fake_quant_activation(x, bits: int = 8, lo: float | None = None, hi: float | None = None):
    """Asymmetric per-tensor min-max rounding (zero kept exactly representable), over x's own range
    or a fixed [lo, hi] (values outside are clamped, as a calibrated range clamps them).

    One new tensor, rounded and clamped in place: clamp(round(x / s), -z, L - z) * s is
    (clamp(round(x / s) + z, 0, L) - z) * s value for value (integers in float32), with three
    temporaries fewer on every conv input of every simulated pass."""
    import torch

    if lo is None or hi is None:
        x_lo, x_hi = (float(v) for v in torch.aminmax(x))  # one pass over x, not two
        lo = x_lo if lo is None else lo
        hi = x_hi if hi is None else hi
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2**bits - 1
    if hi - lo <= 0:
        return x
    scale = (hi - lo) / levels
    zero = round(-lo / scale)
    return torch.div(x, scale).round_().clamp_(-zero, levels - zero).mul_(scale)


def folded(module):
    """A copy of `module` in eval mode, BatchNorm folded into the conv before it where torch.fx traces it."""
    from torch import fx
    from torch.fx.experimental.optimization import fuse

    module = copy.deepcopy(module).eval()
    try:
        return fuse(fx.symbolic_trace(module))  # folds conv -> BN, as the converters do
    except Exception:  # not traceable: as it is (a BN after a conv is then not folded)
        return module


def quantizable(model) -> list:
    """(name, module) of every Conv1d/Conv2d/Linear of `model`."""
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def simulated_outputs(module, inputs: list[np.ndarray], qmax: int = 127, act_bits: int = 8) -> list[np.ndarray]:
    """Every output of `module` over `inputs` (arrays, batch first) with int8 simulated: weights
    per channel in [-qmax, qmax], each conv/linear input per tensor over its min-max range on these
    same inputs (one range over all of them, as a calibrated converter fixes one)."""
    return fast_layout_first(lambda fast: _simulated_outputs(module, inputs, qmax, act_bits, fast))


def _simulated_outputs(module, inputs, qmax: int, act_bits: int, fast: bool) -> list[np.ndarray]:
    import torch

    model = folded(module)
    layers = quantizable(model)
    chunks = [[torch.from_numpy(np.ascontiguousarray(a[i:i + CHUNK])) for a in inputs]
              for i in range(0, int(inputs[0].shape[0]), CHUNK)]
    if fast:
        model, chunks = channels_last(model, chunks)
    ranges: dict[str, list[float]] = {}
    with torch.no_grad(), hooks([(m, _keep_range(n, ranges), None) for n, m in layers]):
        for chunk in chunks:
            model(*chunk)
    with torch.no_grad():
        for _, m in layers:
            m.weight.copy_(fake_quant_weight(m.weight, qmax))
        outs = []
        with hooks([(m, _quantize_in_range(act_bits, *ranges[n]), None) for n, m in layers if n in ranges]):
            for chunk in chunks:
                outs.append([t.detach().cpu().numpy() for t in flatten_outputs(model(*chunk))])
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


# The simulations run a 2-D conv net in channels_last: on MobileNetV2 at 224x224 its float forward
# takes 1.37 s of CPU for 16 samples against 2.25 s (PyTorch's oneDNN convolutions take NHWC); the
# values differ by float rounding (1e-5 of the output's range). A model that cannot run so (a view
# that needs the default strides) runs as it is.
CHANNELS_LAST = True


def channels_last(model, tensors: list) -> tuple:
    """`model` (in place) and its 4-D `tensors` in channels_last, where the model has a Conv2d."""
    import torch

    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return model, tensors
    def nhwc(t):
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    model = model.to(memory_format=torch.channels_last)
    return model, [[nhwc(t) for t in c] if isinstance(c, list) else nhwc(c) for c in tensors]


def fast_layout_first(run):
    """run(fast=True) where CHANNELS_LAST, and run(fast=False) if that raises (a layout the model
    cannot take); run must start from its own copy of the model each time."""
    if CHANNELS_LAST:
        try:
            return run(True)
        except RuntimeError:
            pass
    return run(False)


def simulated_snr_db(module, inputs: list[np.ndarray], reference: list[np.ndarray], qmax: int = 127,
                     act_bits: int = 8) -> float:
    """The weakest output's SNR (dB) of the simulated quantized `module` against `reference`."""
    outs = simulated_outputs(module, inputs, qmax, act_bits)
    return round(float(min(snr_db(r, o.reshape(r.shape)) for r, o in zip(reference, outs))), 3)


def _keep_range(name, ranges):
    import torch

    def hook(module, args):
        lo, hi = (float(v) for v in torch.aminmax(args[0]))
        old = ranges.get(name)
        ranges[name] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]

    return hook


def _quantize_in_range(bits, lo, hi):
    def hook(module, args):
        return (fake_quant_activation(args[0], bits, lo, hi), *args[1:])

    return hook


class hooks:
    """Forward (pre-)hooks on modules for the duration of a `with`: specs are (module, pre, post)."""

    def __init__(self, specs):
        self.specs, self.handles = specs, []

    def __enter__(self):
        for module, pre, post in self.specs:
            if pre is not None:
                self.handles.append(module.register_forward_pre_hook(pre))
            if post is not None:
                self.handles.append(module.register_forward_hook(post))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
