"""Keras TimeDistributed(layer) to .pte: a layer that acts on the last axis alone (Dense, an activation, a
last-axis LayerNormalization) runs once on the whole sequence, not once per step (issue 21).

Under Keras' torch backend TimeDistributed slices the sequence and calls its layer per step: the probe's
kgrutd (Conv1D -> GRU -> TimeDistributed(Dense) over 50 steps) exported 50 slices, 50 linears and a stack,
and a 50-step TimeDistributed(Dense) -> TimeDistributed(LayerNormalization) model made 818 ops in fp32
(41.6 s to convert) and 1,337 in int8 (155 s); called whole, 19 and 23 ops (15.4 s and 16.4 s).

The model here reads the digits' 8x8 images as 8 steps of 8 pixels, trained briefly."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.data import fit_to_spec

from roundtrip import convert_into, cosine, run_all, top1


def _digits_sequences():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # (n, 8 steps, 8 pixels)
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


def _net(keras, per_step: bool):
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8), name="rows")

    def step(layer, name):
        return keras.layers.TimeDistributed(layer, name=name) if per_step else layer

    h = step(keras.layers.Dense(32, activation="relu"), "rows_dense")(x)
    h = step(keras.layers.LayerNormalization(), "rows_norm")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(x, keras.layers.Dense(10, name="out")(h), name="td_digits" if per_step else "plain_digits")


@pytest.fixture(scope="module")
def time_distributed(tmp_path_factory):
    import keras

    from edgeship.sources import load_model

    x, y, xte, yte = _digits_sequences()
    models = {}
    for per_step in (True, False):
        net = _net(keras, per_step)
        net.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, epochs=8, batch_size=64, verbose=0)
        path = tmp_path_factory.mktemp("td") / f"{net.name}.keras"
        net.save(path)
        models[per_step] = (load_model(str(path)), np.asarray(net.predict(xte, verbose=0)))
    model = models[True][0]
    test = fit_to_spec([xte], yte, model.io, "digits-rows:test")
    calib = fit_to_spec([x[:64]], None, model.io, "digits-rows:train")
    return models, test, calib


def test_a_time_distributed_dense_is_one_dense_in_the_pte(time_distributed, tmp_path):
    models, test, _ = time_distributed
    (model, reference), (plain, _) = models[True], models[False]
    path, result = convert_into("keras", "pte", model, "fp32", tmp_path)
    _, plain_result = convert_into("keras", "pte", plain, "fp32", tmp_path)
    assert top1(reference, test.labels) > 85
    assert cosine(run_all(path, test), reference) > 0.99999
    # as many ops as the same layers without TimeDistributed (per step: 8 slices, 8 linears, 8 norms, a stack)
    assert result.delegation["total_ops"] == plain_result.delegation["total_ops"], (result.delegation,
                                                                                    plain_result.delegation)
    assert result.delegation["coverage"] == 1.0


def test_a_time_distributed_int8_pte_keeps_its_accuracy(time_distributed, tmp_path):
    models, test, calib = time_distributed
    model, reference = models[True]
    path, result = convert_into("keras", "pte", model, "int8", tmp_path, calib)
    logits = run_all(path, test)
    assert top1(reference, test.labels) - top1(logits, test.labels) <= 1.0
    assert cosine(logits, reference) > 0.99


def test_only_last_axis_layers_are_called_whole():
    import keras

    from edgeship.convert.keras_pte import per_step_layer

    x = keras.Input((8, 6, 6, 3))
    conv = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3))
    conv(x)
    assert per_step_layer(conv) is None  # a conv per frame: its window would cross frames whole
    norm = keras.layers.TimeDistributed(keras.layers.LayerNormalization(axis=1))
    norm(keras.Input((8, 5, 4)))
    assert per_step_layer(norm) is None  # axis 1 of each step is axis 2 of the sequence
    last = keras.layers.TimeDistributed(keras.layers.LayerNormalization(axis=2))
    last(keras.Input((8, 5, 4)))
    assert per_step_layer(last) is last.layer  # each step's last axis, named by its number
    dense = keras.layers.TimeDistributed(keras.layers.Dense(3))
    dense(keras.Input((8, 5)))
    assert per_step_layer(dense) is dense.layer
    assert per_step_layer(keras.layers.Dense(3)) is None
