"""Empirical bias correction (Nagel et al., 2019, "Data-Free Quantization", section 4.2; AIMET's
empirical variant) of a float PyTorch model before any converter sees it, so it helps every route.

Quantizing a layer's weights shifts the mean of its output: E[Q(W) x] != E[W x] when the rounding
errors of a channel's weights do not cancel (a skewed kernel, a few large weights and many small
ones). That shift passes through every later layer. For each conv/linear, in execution order, the
correction is

    delta_c = E[y_c of the float model] - E[y_c of the simulated quantized model]

per output channel, measured on calibration samples, and added to the layer's bias (one is
created where there is none). The simulated model quantizes what the converters quantize: the
weights symmetric per output channel (int8 [-127, 127]; onnxruntime's int8 route falls back to
7-bit weights only where they measure better, and auto then compares with and without), and each conv/linear's input per tensor with min-max ranges
(int8, or int16 for int16x8). It runs once over the samples with a hook on each layer: when layer i
runs, layers < i have already been corrected (their hooks added their delta to what flows on), so
the correction is sequential in one pass. BatchNorm is folded into the convolution first, as the
converters fold it, so the weights simulated are the weights they quantize.

A Keras model gets the same correction in Keras (quantize/keras_bias.py: BatchNorm folded into the
simulated kernel, the shift added to the bias or the folded BN's beta), on a clone of the model.

Only quantized recipes get a corrected model; the fp32 artifact is never touched.
"""

from __future__ import annotations

import copy

import numpy as np

from edgeship.errors import InputError, UnsupportedError
from edgeship.quantize import keras_bias
from edgeship.quantize.simulate import channels_last, fake_quant_activation, fake_quant_weight, fast_layout_first
from edgeship.quantize.simulate import folded as _folded
from edgeship.quantize.simulate import hooks as _hooks

MODES = ("off", "on", "auto")
SAMPLES = 64  # calibration samples the shifts are measured on (means over batch and positions)


def weight_qmax(target: str, recipe: str) -> int:
    """The largest integer of the route's symmetric per-channel weight range."""
    return 127  # onnxruntime's int8 keeps 7-bit weights only where it measures better (convert/onnx_common.py)


def correct(module, inputs: list[np.ndarray], qmax: int = 127, act_bits: int = 8):
    """A copy of `module` (eval mode, BatchNorm folded where it traces) whose conv/linear biases
    absorb the output-mean shift of quantization, measured on `inputs` (arrays, batch first).
    Returns (new module, record {layers, samples, weight_qmax, activation_bits, mean_abs_shift,
    max_abs_shift})."""
    return fast_layout_first(lambda fast: _correct(module, inputs, qmax, act_bits, fast))


def _correct(module, inputs, qmax: int, act_bits: int, fast: bool):
    import torch

    model = _folded(module)
    tensors = [torch.from_numpy(np.ascontiguousarray(a[:SAMPLES])) for a in inputs]
    layers = _layers(model, tensors)
    # the two passes run on a copy (in channels_last where `fast`); the model returned keeps its layout
    measured, tensors = channels_last(copy.deepcopy(model), tensors) if fast else (model, tensors)
    running = dict(measured.named_modules())
    float_means: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _hooks([(running[name], None, _keep_mean(name, float_means)) for name, _ in layers]):
        measured(*tensors)

    simulated = copy.deepcopy(measured)
    sim = dict(simulated.named_modules())
    deltas: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, _ in layers:
            sim[name].weight.copy_(fake_quant_weight(sim[name].weight, qmax))
        hooks = [(sim[name], _quantize_input(act_bits), _shift_mean(name, float_means, deltas)) for name, _ in layers]
        with _hooks(hooks):
            simulated(*tensors)
        modules = dict(model.named_modules())
        for name, delta in deltas.items():
            layer = modules[name]
            if layer.bias is None:
                layer.bias = torch.nn.Parameter(torch.zeros(delta.shape[0], dtype=layer.weight.dtype))
            layer.bias.add_(delta)
    shifts = torch.cat([d.abs() for d in deltas.values()]) if deltas else torch.zeros(1)
    return model, {"layers": len(deltas), "samples": int(tensors[0].shape[0]), "weight_qmax": qmax,
                   "activation_bits": act_bits, "mean_abs_shift": round(float(shifts.mean()), 6),
                   "max_abs_shift": round(float(shifts.max()), 6)}


def _layers(model, tensors):
    """(name, module) of each Conv1d/Conv2d/Linear in execution order, each called exactly once."""
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]
    calls: list[str] = []
    with torch.no_grad(), _hooks([(m, None, _record_call(n, calls)) for n, m in named]):
        model(*[t[:1] for t in tensors])
    once = {n for n in calls if calls.count(n) == 1}
    by_name = dict(named)
    return [(n, by_name[n]) for n in calls if n in once]


def _channel_mean(y, conv: bool):
    dims = [d for d in range(y.dim()) if d != (1 if conv else y.dim() - 1)]
    return y.mean(dims)


def _is_conv(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d))


def _record_call(name, calls):
    def hook(module, args, out):
        calls.append(name)

    return hook


def _keep_mean(name, means):
    def hook(module, args, out):
        means[name] = _channel_mean(out, _is_conv(module))

    return hook


def _quantize_input(bits):
    def hook(module, args):
        return (fake_quant_activation(args[0], bits), *args[1:])

    return hook


def _shift_mean(name, float_means, deltas):
    """Measure this layer's shift with everything before it corrected, and pass the corrected output on."""

    def hook(module, args, out):
        delta = float_means[name] - _channel_mean(out, _is_conv(module))
        deltas[name] = delta
        shape = [1] * out.dim()
        shape[1 if _is_conv(module) else -1] = -1
        return out + delta.reshape(shape)

    return hook


class Plan:
    """--bias-correction for one export (a torch nn.Module or a Keras model): `corrected(model, calib,
    target, recipe)` gives the corrected model and its record, measured on the calibration data with
    the weight range of the route and recipe it is for, once per model. quantize/rewrites.py decides:
    on applies it; auto simulates first (torch) and runs the real trial where that predicts a gain."""

    def __init__(self, mode: str, model, inputs, reference, log=print):
        if mode not in MODES:
            raise InputError(f"--bias-correction must be one of {', '.join(MODES)}, got '{mode}'")
        if model.kind not in ("torch-module", "keras"):
            raise UnsupportedError(f"bias correction (--bias-correction {mode}) rewrites a PyTorch nn.Module or a "
                                   f"Keras model; '{model.name}' is a {model.kind} model",
                                   hint="pass --bias-correction off")
        self.mode, self.model, self.inputs, self.reference, self.log = mode, model, inputs, reference, log
        self._cache: dict[tuple, tuple] = {}

    def corrected(self, model, calib, target: str, recipe: str):
        """(the corrected Model, its record), computed once per model, data and weight range."""
        from dataclasses import replace

        qmax, bits = weight_qmax(target, recipe), 16 if recipe == "int16x8" else 8
        key = (id(model.obj), id(calib), qmax, bits)
        if key not in self._cache:
            if model.kind == "keras":  # a Keras model: the same correction in Keras (quantize/keras_bias.py)
                fixed, record = self._keras(model, calib, qmax, bits)
            else:
                module, record = correct(model.obj, calib.arrays, qmax, bits)
                fixed = replace(model, obj=module)
            self._cache[key] = (fixed, record)
            self.log(f"bias correction: {record['layers']} layer(s), mean |shift| {record['mean_abs_shift']:.3g}, "
                     f"max {record['max_abs_shift']:.3g} (weights [-{qmax}, {qmax}], {bits}-bit inputs, "
                     f"{record['samples']} calibration samples)")
        return self._cache[key]

    def _keras(self, model, calib, qmax: int, bits: int):
        """keras_bias.correct on a Keras model; one that cannot be cloned or run on a batch of samples
        (a custom layer without get_config, a fixed batch size) is refused ('on') or left as it is ('auto')."""
        try:
            fixed, record = keras_bias.correct(model.obj, calib.arrays, qmax, bits)
            return keras_bias.as_model(model, fixed), record
        except Exception as e:
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}" if str(e).strip() else type(e).__name__
            if self.mode == "on":
                raise UnsupportedError(f"bias correction (--bias-correction on) could not rewrite the Keras model "
                                       f"'{model.name}': {why}", hint="pass --bias-correction off") from None
            self.log(f"bias correction skipped (--bias-correction auto): {why}")
            return model, {"layers": 0, "samples": 0, "weight_qmax": qmax, "activation_bits": bits,
                           "mean_abs_shift": 0.0, "max_abs_shift": 0.0, "skipped": why}
