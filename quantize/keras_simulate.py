"""int8 simulated in Keras, the twin of quantize/simulate.py for torch: what CLE auto's cheap first
stage needs for a Keras source. Each conv/dense layer's kernel is rounded as the converters round it
(symmetric per output channel, after folding the BatchNormalization that follows it; keras_bias's
`simulated_kernel`) and its input is rounded per tensor over its own min-max range (int8, or int16 for
int16x8), on a clone; the weakest output's SNR against the float reference is the figure."""

from __future__ import annotations

import numpy as np

from edgeship.metrics import snr_db
from edgeship.quantize.keras_bias import (
    bn_scale,
    clone,
    fake_quant_activation,
    kind_of,
    patched,
    simulated_kernel,
    targets,
)
from edgeship.sources import flatten_outputs


def simulated_outputs(model, inputs: list[np.ndarray], qmax: int = 127, act_bits: int = 8) -> list[np.ndarray]:
    sim = clone(model)
    layers = targets(sim)
    for _, layer, bn in layers:
        layer.kernel.assign(simulated_kernel(np.asarray(layer.kernel), kind_of(layer), bn_scale(bn), qmax))

    def rounding_inputs(call, act):
        def run(x, *args, **kwargs):
            return act(call(fake_quant_activation(x, act_bits), *args, **kwargs))

        return run

    arrays = [np.ascontiguousarray(a) for a in inputs]
    with patched([(layer, rounding_inputs) for _, layer, _ in layers]):
        out = sim(arrays[0] if len(arrays) == 1 else arrays, training=False)
    return [np.asarray(o) for o in flatten_outputs(out)]


def simulated_snr_db(model, inputs: list[np.ndarray], reference: list[np.ndarray], qmax: int = 127,
                     act_bits: int = 8) -> float:
    outs = simulated_outputs(model, inputs, qmax, act_bits)
    return round(float(min(snr_db(r, o.reshape(r.shape)) for r, o in zip(reference, outs))), 3)
