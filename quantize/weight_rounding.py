"""Data-aware weight rounding (GPTQ: Frantar et al., 2023, "Optimal Brain Compression" / "GPTQ") of
a float PyTorch model before any converter sees it, so it helps every route.

Every route rounds each conv/linear weight to the nearest point of a symmetric per-output-channel
grid (scale = max|w| / qmax: int8 [-127, 127]; onnxruntime's int8 [-64, 64]). Rounding each weight
on its own ignores that the errors of one output's weights add up: GPTQ rounds the input columns
one at a time and spreads each column's rounding error over the columns not yet rounded, weighted
by the inverse of the layer's input Hessian H = X^T X (measured on calibration samples), so the
layer's *output* error ||(W - Q) X|| shrinks, not each weight's.

The rewritten model's weights already lie on the route's grid, and each channel's largest weight is
kept exactly (it is never moved by the updates), so the route's own scale (max|w| / qmax) is the
scale used here and its round-to-nearest returns the integers chosen here: nothing is rounded twice.
Layers are rounded in execution order, each on the inputs the already-rounded layers before it
produce. BatchNorm is folded into its convolution first, as the converters fold it. Grouped
convolutions and convolutions padded other than with zeros are left to the route's rounding.
"""

from __future__ import annotations

import copy

import numpy as np

from edgeship.errors import InputError, UnsupportedError
from edgeship.quantize.bias_correction import weight_qmax

MODES = ("nearest", "gptq", "auto")
SAMPLES = 64  # calibration samples the Hessians are measured on
DAMP = 0.01  # added to H's diagonal, as a fraction of its mean (GPTQ's percdamp)
CHUNK = 8  # samples unfolded at a time while H is accumulated


def round_weights(module, inputs: list[np.ndarray], qmax: int = 127):
    """A copy of `module` (eval mode, BatchNorm folded where it traces) whose conv/linear weights
    are GPTQ-rounded onto the symmetric per-channel grid of `qmax`, measured on `inputs` (arrays,
    batch first). Returns (new module, record {layers, samples, weight_qmax, output_error_ratio}):
    output_error_ratio is the mean over layers of ||(W - Q) X|| with GPTQ over the same with
    round-to-nearest (below 1: better)."""
    import torch

    model = folded(module)
    tensors = [torch.from_numpy(np.ascontiguousarray(a[:SAMPLES])) for a in inputs]
    layers = _layers(model, tensors)
    ratios = []
    with torch.no_grad():
        for name, layer in layers:
            if _is_conv(layer) and (layer.groups != 1 or layer.padding_mode != "zeros"):
                continue
            h = _hessian(layer, _layer_input(model, layer, tensors))
            w = layer.weight.detach().flatten(1).double()
            q = gptq(w, h, qmax)
            rtn = _nearest(w, qmax)
            err_q, err_rtn = _output_error(w - q, h), _output_error(w - rtn, h)
            if err_q >= err_rtn:  # never worse than the route's own rounding on these samples
                q = rtn
            ratios.append(min(err_q, err_rtn) / max(err_rtn, 1e-30))
            layer.weight.copy_(q.reshape(layer.weight.shape).to(layer.weight.dtype))
    return model, {"layers": len(ratios), "samples": int(tensors[0].shape[0]), "weight_qmax": qmax,
                   "output_error_ratio": round(float(np.mean(ratios)), 4) if ratios else 1.0}


def gptq(w, h, qmax: int):
    """GPTQ rounding of w (out x d, float64) for the input Hessian h = X^T X (d x d) onto
    scale = max|w_row| / qmax; each row's largest |w| is kept (so the grid's scale is unchanged)."""
    import torch

    out, d = w.shape
    absmax = w.abs().amax(1).clamp_min(1e-12)
    scale = (absmax / qmax)[:, None]
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += DAMP * torch.diag(h).mean() * torch.eye(d, dtype=h.dtype)
    try:
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    except RuntimeError:  # not positive definite even damped: the route's rounding
        return _nearest(w, qmax)
    keep = torch.zeros_like(w, dtype=torch.bool)
    keep[torch.arange(out), w.abs().argmax(1)] = True
    free = (~keep).to(w.dtype)
    w = w.clone()
    q = torch.empty_like(w)
    for i in range(d):
        col = w[:, i]
        qi = torch.clamp(torch.round(col / scale[:, 0]), -qmax, qmax) * scale[:, 0]
        q[:, i] = qi
        err = (col - qi) / hinv[i, i]
        w[:, i + 1 :] -= (err[:, None] * hinv[i, i + 1 :][None, :]) * free[:, i + 1 :]
    return q


def _nearest(w, qmax: int):
    import torch

    scale = (w.abs().amax(1).clamp_min(1e-12) / qmax)[:, None]
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def _output_error(e, h) -> float:
    """||E X|| from H = X^T X: sqrt(trace(E H E^T))."""
    return float(((e @ h) * e).sum().clamp_min(0).sqrt())


def _hessian(layer, x):
    """H = X^T X (float64) of the layer's input rows (samples x positions, d), d matching
    weight.flatten(1)'s columns; accumulated a few samples at a time."""
    import torch

    d = layer.weight[0].numel()
    h = torch.zeros(d, d, dtype=torch.float64)
    for chunk in x.split(CHUNK):
        if isinstance(layer, torch.nn.Linear):
            rows = chunk.reshape(-1, chunk.shape[-1])
        elif isinstance(layer, torch.nn.Conv2d):
            rows = _unfold2d(layer, chunk)
        else:  # Conv1d as a Conv2d of height 1
            rows = _unfold1d(layer, chunk)
        rows = rows.double()
        h += rows.T @ rows
    return h


def _unfold2d(layer, x):
    import torch.nn.functional as F

    padding = _padding(layer, 2)
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _unfold1d(layer, x):
    import torch.nn.functional as F

    padding = _padding(layer, 1)
    cols = F.unfold(x.unsqueeze(2), (1, layer.kernel_size[0]), dilation=(1, layer.dilation[0]),
                    padding=(0, padding[0]), stride=(1, layer.stride[0]))
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _padding(layer, dims: int):
    if isinstance(layer.padding, str):  # 'valid' or 'same' (stride 1)
        if layer.padding == "valid":
            return (0,) * dims
        return tuple(d * (k - 1) // 2 for d, k in zip(layer.dilation, layer.kernel_size))
    return layer.padding


def _layer_input(model, layer, tensors):
    import torch

    got = {}

    def hook(module, args):
        got["x"] = args[0].detach()
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(*tensors)
    except _Stop:
        pass
    finally:
        handle.remove()
    return got["x"]


class _Stop(Exception):
    pass


def folded(module):
    """A copy in eval mode with BatchNorm folded into the conv before it, as the converters fold it."""
    import torch.fx as fx
    from torch.fx.experimental.optimization import fuse

    module = copy.deepcopy(module).eval()
    try:
        return fuse(fx.symbolic_trace(module))
    except Exception:  # not traceable: as it is (a BN after a conv is then not folded)
        return module


def _layers(model, tensors):
    """(name, module) of each Conv1d/Conv2d/Linear in execution order, each called exactly once."""
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]
    calls: list[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: calls.append(n)) for n, m in named]
    try:
        with torch.no_grad():
            model(*[t[:1] for t in tensors])
    finally:
        for h in handles:
            h.remove()
    once = {n for n in calls if calls.count(n) == 1}
    by_name = dict(named)
    return [(n, by_name[n]) for n in calls if n in once]


def _is_conv(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d))


class Plan:
    """--weight-rounding for one export: `rounded(model, calib, target, recipe)` gives the GPTQ-rounded
    model and its record, once per model, data and the route's weight range. quantize/rewrites.py
    decides: gptq applies it; auto runs the real trial (rounded against nearest) and keeps the better."""

    def __init__(self, mode: str, model, inputs, reference, log=print):
        if mode not in MODES:
            raise InputError(f"--weight-rounding must be one of {', '.join(MODES)}, got '{mode}'")
        if model.kind != "torch-module":
            raise UnsupportedError(f"GPTQ weight rounding (--weight-rounding {mode}) rewrites a PyTorch nn.Module; "
                                   f"'{model.name}' is a {model.kind} model", hint="pass --weight-rounding nearest")
        self.mode, self.model, self.inputs, self.reference, self.log = mode, model, inputs, reference, log
        self._cache: dict[tuple, tuple] = {}

    def rounded(self, model, calib, target: str, recipe: str):
        from dataclasses import replace

        qmax = weight_qmax(target, recipe)
        key = (id(model.obj), id(calib), qmax)
        if key not in self._cache:
            module, record = round_weights(model.obj, calib.arrays, qmax)
            self._cache[key] = (replace(model, obj=module), record)
            self.log(f"weight rounding (GPTQ): {record['layers']} layer(s), output error x"
                     f"{record['output_error_ratio']:.3g} of round-to-nearest (weights [-{qmax}, {qmax}], "
                     f"{record['samples']} calibration samples)")
        return self._cache[key]
