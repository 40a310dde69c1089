"""Cross-layer equalization (Nagel et al., 2019) of a float Keras 3 model: the Keras twin of
quantize/equalize.py, so a Keras source gets the rescue where its pattern is there.

A pair is layer1 -> [BatchNormalization] -> [ReLU] -> layer2, each link the only consumer of the one
before it, layer1 a Conv1D/Conv2D/Dense (or a DepthwiseConv2D with depth multiplier 1) called once,
layer2 a Conv1D/Conv2D/Dense or a depthwise conv with multiplier 1, channels last. Between them only
functions that commute with a positive per-channel scale: none (linear), or ReLU without a cap
(a fused `activation="relu"`, keras.layers.ReLU() or Activation("relu")). ReLU6 does not commute
(its cap would move per channel, which Keras has no layer for), so a pair across it is not taken.

Output channel i of layer1 (its BN-folded kernel, as the converters fold it) is divided by s_i and
input channel i of layer2 multiplied by s_i, s_i = sqrt(r1_i / r2_i) (r: the channel's largest
|folded weight|), a few times over. Where a BatchNormalization follows layer1, its gamma and beta take
the 1/s_i (BN(x) / s exactly); otherwise layer1's kernel and bias do. The float function is the same
up to rounding; the user's model is never touched (the answer is a clone).
"""

from __future__ import annotations

import numpy as np

from edgeship.quantize.keras_bias import bn_scale, clone, columns, folded_bn, kind_of, leaves, patched

ITERATIONS = 4
DEAD = 1e-6  # a channel whose range is under this fraction of its layer's largest is left as it is
MAX_SCALE = 1e4  # the most any channel is scaled by, all iterations together
LINEAR_KINDS = ("Conv1D", "Conv2D", "Dense")


def equalize(model, sample: list[np.ndarray]):
    """A clone of the Keras `model` with its conv/dense pairs equalized: (new model, pairs equalized).
    `sample`: one batch of inputs (arrays), run once to see which layers are called once."""
    eq = clone(model)
    found = pairs(eq, sample)
    for layer1, bn, layer2 in found:
        total = np.ones(_out_channels(layer1))
        for _ in range(ITERATIONS):
            r1 = np.abs(_folded_out(layer1, bn)).max(0)
            r2 = _input_ranges(layer2)
            # a dead channel (range under DEAD of its layer's largest) keeps its scale: equalizing it
            # would multiply the other side by the ratio of a near-zero range, and the scale each
            # channel moves by over all iterations stays within MAX_SCALE either way
            live = (r1 > DEAD * r1.max()) & (r2 > DEAD * r2.max())
            s = np.where(live, np.sqrt(r1 / np.maximum(r2, 1e-30)), 1.0)
            s = np.clip(total * s, 1 / MAX_SCALE, MAX_SCALE) / total
            _scale_out(layer1, bn, 1.0 / s)
            _scale_in(layer2, s)
            total = total * s
    return eq, len(found)


def pairs(model, sample: list[np.ndarray]) -> list[tuple[object, object, object]]:
    """(layer1, the BatchNormalization after it or None, layer2) of each pair to equalize."""
    import keras

    once = called_once(model, sample)
    out = []
    for _, layer in leaves(model):
        if not _equalizable(layer) or id(layer) not in once or not hasattr(layer, "kernel"):
            continue
        act = getattr(layer.activation, "__name__", "")
        if act not in ("linear", "relu"):
            continue
        bn = folded_bn(layer, kind_of(layer)) if act == "linear" else None
        if bn is not None and not bn.scale:
            continue
        node = _only_consumer(bn if bn is not None else layer)
        if node is not None and _is_plain_relu(node, keras):
            node = _only_consumer(node)
        if node is None or not _equalizable(node) or id(node) not in once or not hasattr(node, "kernel"):
            continue
        if _out_channels(layer) != _in_channels(node):
            continue
        out.append((layer, bn, node))
    return out


def _equalizable(layer) -> bool:
    kind = kind_of(layer)
    if kind is None or getattr(layer, "data_format", "channels_last") == "channels_first":
        return False
    if getattr(layer, "quantization_mode", None):
        return False
    return kind in LINEAR_KINDS or (kind == "DepthwiseConv2D" and layer.depth_multiplier == 1)


def called_once(model, sample: list[np.ndarray]) -> set[int]:
    """ids of the conv/dense layers one forward pass calls exactly once (a loaded model's layers hold
    one inbound node per build of its graph, so the nodes cannot tell)."""
    from collections import Counter

    calls: Counter = Counter()

    def counting(layer):
        def probe(call, act):
            def run(*args, **kwargs):
                calls[id(layer)] += 1
                return act(call(*args, **kwargs))

            return run

        return probe

    layers = [layer for _, layer in leaves(model) if kind_of(layer) is not None]
    arrays = [np.ascontiguousarray(a) for a in sample]
    with patched([(layer, counting(layer)) for layer in layers]):
        model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    return {i for i, n in calls.items() if n == 1}


def _only_consumer(layer):
    consumers = list({id(n.operation): n.operation for n in getattr(layer, "_outbound_nodes", [])}.values())
    return consumers[0] if len(consumers) == 1 else None


def _is_plain_relu(layer, keras) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "") == "relu"
    return False


def _out_channels(layer) -> int:
    k = layer.kernel.shape
    return int(k[-2] * k[-1]) if kind_of(layer) == "DepthwiseConv2D" else int(k[-1])


def _in_channels(layer) -> int:
    return int(layer.kernel.shape[-2])


def _folded_out(layer, bn) -> np.ndarray:
    """layer1's kernel as (taps, output channels), with the BN after it folded in."""
    cols = columns(np.asarray(layer.kernel, np.float64), kind_of(layer))
    scale = bn_scale(bn)
    return cols if scale is None else cols * scale


def _input_ranges(layer) -> np.ndarray:
    """The largest |folded weight| reading each input channel of layer2."""
    k = np.asarray(layer.kernel, np.float64)
    scale = bn_scale(folded_bn(layer, kind_of(layer)))
    if kind_of(layer) == "DepthwiseConv2D":  # (kh, kw, C, 1): input channel i is output channel i
        cols = columns(k, "DepthwiseConv2D")
        return np.abs(cols if scale is None else cols * scale).max(0)
    w = np.moveaxis(k, -2, 0).reshape(k.shape[-2], -1, k.shape[-1])  # (in, taps, out)
    if scale is not None:
        w = w * scale
    return np.abs(w).reshape(k.shape[-2], -1).max(1)


def _scale_out(layer, bn, factor: np.ndarray) -> None:
    if bn is not None:  # BN(x) * f == BN with gamma * f and beta * f
        bn.gamma.assign((np.asarray(bn.gamma) * factor).astype(np.float32))
        if bn.center:
            bn.beta.assign((np.asarray(bn.beta) * factor).astype(np.float32))
        return
    k = np.asarray(layer.kernel)
    if kind_of(layer) == "DepthwiseConv2D":
        layer.kernel.assign((k * factor.reshape(1, 1, -1, 1)).astype(np.float32))
    else:
        layer.kernel.assign((k * factor).astype(np.float32))  # output channels last
    if layer.use_bias:
        layer.bias.assign((np.asarray(layer.bias) * factor).astype(np.float32))


def _scale_in(layer, factor: np.ndarray) -> None:
    k = np.asarray(layer.kernel)
    shape = [1] * k.ndim
    shape[-2] = -1  # input channels (a depthwise conv's channels) sit second to last
    layer.kernel.assign((k * factor.reshape(shape)).astype(np.float32))
