"""Empirical bias correction (Nagel et al., 2019, section 4.2) of a float Keras 3 model, the Keras
twin of quantize/bias_correction.py's `correct` for torch: the same correction, measured the same
way, so the corrected model helps every Keras route (.tflite, .pte, .onnx).

For each Conv1D/Conv2D/DepthwiseConv2D/Dense called once, in execution order,

    delta_c = E[y_c of the float model] - E[y_c of the simulated quantized model]

per output channel of the layer's linear output (before its fused activation), measured on
calibration samples. The simulated model quantizes what the converters quantize: the kernel
symmetric per output channel (int8 [-qmax, qmax]) after BatchNormalization is folded into it where
one follows a conv (a linear conv whose only consumer is a channel-last BatchNormalization, as
TFLiteConverter and the XNNPACK quantizer fold it), and each such layer's input per tensor with
min-max ranges (int8, or int16 for int16x8). The folded kernel is simulated without changing the
graph: the conv holds Q(k * s) / s, s = gamma / sqrt(var + eps), so conv -> BN computes the folded
quantized conv. One eager pass over the samples runs the layers in order, each measuring its shift
with everything before it already corrected, so the correction is sequential.

Delta lands in the layer's bias; a conv without one that feeds a folded BatchNormalization moves the
BN's beta by s * delta (its moving mean by -delta where it has no beta), which is the same shift of
the folded bias; any other layer without a bias gets one. The user's model is never touched: the
measurements run on clones and the answer is a clone (keras.models.clone_model + set_weights).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

SAMPLES = 64  # calibration samples the shifts are measured on (as bias_correction.SAMPLES)
KINDS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


def correct(model, inputs: list[np.ndarray], qmax: int = 127, act_bits: int = 8):
    """A clone of the Keras `model` whose conv/dense biases (or the folded BatchNorm's beta) absorb
    the output-mean shift of int8, measured on `inputs` (arrays, batch first). Returns (new model,
    record {layers, samples, weight_qmax, activation_bits, mean_abs_shift, max_abs_shift})."""
    arrays = [np.ascontiguousarray(a[:SAMPLES]) for a in inputs]
    feed = arrays[0] if len(arrays) == 1 else arrays

    ref = clone(model)  # the float pass: what each layer's output mean should be
    layers = targets(ref)
    means: dict[str, np.ndarray] = {}
    calls: list[str] = []
    with patched([(layer, _float_probe(path, layer, means, calls)) for path, layer, _ in layers]):
        ref(feed, training=False)
    count = Counter(calls)
    order = [p for p in dict.fromkeys(calls) if count[p] == 1]  # a shared layer has no single shift

    sim = clone(model)
    sim_layers = {path: (layer, bn) for path, layer, bn in targets(sim)}
    for path in order:
        layer, bn = sim_layers[path]
        layer.kernel.assign(simulated_kernel(np.asarray(layer.kernel), kind_of(layer), bn_scale(bn), qmax))
    deltas: dict[str, np.ndarray] = {}
    with patched([(sim_layers[p][0], _sim_probe(p, sim_layers[p][0], means, deltas, act_bits)) for p in order]):
        sim(feed, training=False)

    path_of = {id(layer): path for path, layer in leaves(ref)}
    folded = {path: path_of[id(bn)] for path, _, bn in layers if bn is not None}  # layer -> its BN's path
    scales = {path: bn_scale(bn) for path, _, bn in layers if bn is not None}
    fixed = _with_deltas(model, deltas, folded, scales)
    shifts = np.concatenate([np.abs(d * scales.get(p, 1.0)) for p, d in deltas.items()]) if deltas else np.zeros(1)
    return fixed, {"layers": len(deltas), "samples": int(arrays[0].shape[0]), "weight_qmax": qmax,
                   "activation_bits": act_bits, "mean_abs_shift": round(float(shifts.mean()), 6),
                   "max_abs_shift": round(float(shifts.max()), 6)}


def clone(model):
    """A copy of a Keras model with its own layers and the same weights (nested models included)."""
    return _clone(model, ())


def simulated_kernel(kernel: np.ndarray, kind: str, scale: np.ndarray | None, qmax: int) -> np.ndarray:
    """The kernel the layer holds so that it (and the BatchNorm after it, per-channel factor `scale`)
    computes the converter's int8 conv: Q(kernel * scale) / scale, Q symmetric per output channel."""
    cols = columns(kernel, kind).astype(np.float64)  # (taps, output channels)
    s = np.ones(cols.shape[1]) if scale is None else np.asarray(scale, np.float64)
    usable = s != 0
    s = np.where(usable, s, 1.0)
    w = cols * s
    step = np.maximum(np.abs(w).max(0), 1e-12) / qmax
    q = np.clip(np.round(w / step), -qmax, qmax) * step / s
    q = np.where(usable, q, cols)
    return q.reshape(kernel.shape).astype(kernel.dtype)


def columns(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The kernel as (taps, output channels): a depthwise kernel (kh, kw, in, mult) has in * mult
    outputs, channel i * mult + m; the others keep outputs on the last axis."""
    if kind == "DepthwiseConv2D":
        return kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1])
    return kernel.reshape(-1, kernel.shape[-1])


def kind_of(layer) -> str | None:
    import keras

    for name in KINDS:
        if type(layer) is getattr(keras.layers, name) or isinstance(layer, getattr(keras.layers, name)):
            return name
    return None


def _channel_axis(layer) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def leaves(model, prefix: str = ""):
    """(path, layer) of every layer that is not itself a model (nor an input), nested models walked in order."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            yield from leaves(layer, f"{prefix}{layer.name}/")
        else:
            yield f"{prefix}{layer.name}", layer


def targets(model) -> list[tuple[str, object, object]]:
    """(path, layer, the BatchNormalization folded into it or None) of each layer corrected."""
    out = []
    for path, layer in leaves(model):
        kind = kind_of(layer)
        if kind is None or getattr(layer, "quantization_mode", None) or not hasattr(layer, "kernel"):
            continue
        out.append((path, layer, folded_bn(layer, kind)))
    return out


def folded_bn(layer, kind: str):
    """The BatchNormalization a converter folds into this conv: its only consumer, on the channel
    axis, with no activation between them."""
    import keras

    if kind == "Dense" or getattr(layer.activation, "__name__", "") != "linear":
        return None
    # a loaded Sequential holds one node per build of its graph: count the distinct consumers
    consumers = list({id(n.operation): n.operation for n in getattr(layer, "_outbound_nodes", [])}.values())
    if len(consumers) != 1:
        return None
    bn = consumers[0]
    if not isinstance(bn, keras.layers.BatchNormalization):
        return None
    rank = len(layer.kernel.shape)  # a conv kernel has the rank of the conv's input
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    if axis is None:
        return None
    want = _channel_axis(layer)
    if want == -1 and axis not in (-1, rank - 1):
        return None
    if want == 1 and axis != 1:
        return None
    return bn


def bn_scale(bn) -> np.ndarray | None:
    if bn is None:
        return None
    var = np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(var)
    return gamma / np.sqrt(var + bn.epsilon)


class patched:  # noqa: N801 (a context manager named for what it holds)
    """Each layer's call replaced by a probe for the duration of a `with` (clones only): the probe
    gets the layer's linear call (its activation set to linear) and its activation, and returns
    the activated output."""

    def __init__(self, specs):
        self.specs, self.saved = specs, []

    def __enter__(self):
        import keras

        for layer, probe in self.specs:
            call, act = layer.call, layer.activation
            self.saved.append((layer, call, act))
            object.__setattr__(layer, "activation", keras.activations.linear)
            object.__setattr__(layer, "call", probe(call, act))
        return self

    def __exit__(self, *exc):
        for layer, call, act in reversed(self.saved):
            object.__setattr__(layer, "activation", act)
            object.__setattr__(layer, "call", call)


def _mean(y, layer) -> np.ndarray:
    y = np.asarray(y, np.float64)
    axis = _channel_axis(layer) % y.ndim if kind_of(layer) != "Dense" else y.ndim - 1
    return y.mean(tuple(d for d in range(y.ndim) if d != axis))


def _broadcast(delta: np.ndarray, y, layer) -> np.ndarray:
    shape = [1] * len(y.shape)
    shape[1 if kind_of(layer) != "Dense" and _channel_axis(layer) == 1 else -1] = -1
    return delta.reshape(shape).astype(np.float32)


def _float_probe(path, layer, means, calls):
    def probe(call, act):
        def run(inputs, *args, **kwargs):
            y = call(inputs, *args, **kwargs)
            means[path] = _mean(y, layer)
            calls.append(path)
            return act(y)

        return run

    return probe


def _sim_probe(path, layer, means, deltas, bits):
    """Quantize the input, measure this layer's shift with everything before it corrected, and
    pass the corrected output on."""

    def probe(call, act):
        def run(inputs, *args, **kwargs):
            y = call(fake_quant_activation(inputs, bits), *args, **kwargs)
            delta = means[path] - _mean(y, layer)
            deltas[path] = delta
            return act(y + _broadcast(delta, y, layer))

        return run

    return probe


def fake_quant_activation(x, bits: int = 8):
    """Asymmetric per-tensor min-max rounding over x's own range (zero exactly representable), as
    simulate.fake_quant_activation does it in torch."""
    import keras

    a = np.asarray(x, np.float32)
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    if hi - lo <= 0:
        return x
    levels = 2**bits - 1
    scale = (hi - lo) / levels
    zero = round(-lo / scale)
    q = (np.clip(np.round(a / scale) + zero, 0, levels) - zero) * scale
    return keras.ops.convert_to_tensor(q.astype(np.float32))


def _clone(model, needs_bias):
    """clone_model + per-layer weights; layers whose id is in `needs_bias` are rebuilt with a zero bias."""
    import keras

    def fresh(layer):
        config = layer.get_config()
        if id(layer) in needs_bias:
            config = {**config, "use_bias": True}
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=fresh, recursive=True)
    old, new = list(leaves(model)), list(leaves(copy))
    if [p for p, _ in old] != [p for p, _ in new]:
        raise RuntimeError("the clone's layers differ from the model's")
    for (_, a), (_, b) in zip(old, new):
        weights = a.get_weights()
        if id(a) in needs_bias:
            weights = [*weights, np.zeros(len(b.get_weights()[-1]), np.float32)]
        if weights:
            b.set_weights(weights)
    return copy


def _with_deltas(model, deltas: dict[str, np.ndarray], folded: dict[str, str], scales: dict[str, np.ndarray]):
    """A clone of `model` with each layer's delta added to its bias, or where it has none and feeds
    a folded BatchNorm (`folded`: layer path -> BN path), to that BN's beta (scaled as the BN scales)."""
    original = dict(leaves(model))
    needs = {id(original[p]) for p in deltas if not original[p].use_bias and p not in folded}
    fixed = _clone(model, needs)
    by_path = dict(leaves(fixed))
    for path, delta in deltas.items():
        layer = by_path[path]
        if layer.use_bias:
            layer.bias.assign(np.asarray(layer.bias) + delta.astype(np.float32))
            continue
        bn = by_path[folded[path]]
        if bn.center:
            bn.beta.assign(np.asarray(bn.beta) + (scales[path] * delta).astype(np.float32))
        else:
            bn.moving_mean.assign(np.asarray(bn.moving_mean) - delta.astype(np.float32))
    return fixed


def as_model(model, keras_model):
    """`model` (an edgeship Model of kind 'keras') holding `keras_model` instead: its float runner,
    and a .keras file of it for the routes that read the file (the .pte route's torch-backend
    child), saved once in the cache under its architecture's and weights' hash."""
    from dataclasses import replace

    from edgeship.sources import flatten_outputs, keras_in_cache

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = keras_model(inputs if len(inputs) > 1 else inputs[0], training=False)
        return [np.asarray(o) for o in flatten_outputs(out)]

    return replace(model, obj=keras_model, run=run, source_path=str(keras_in_cache(keras_model)))
