"""A Keras model with an Embedding and int32 token ids to int8 .pte. Keras' Embedding (torch
backend) wraps negative ids with `where(ids < 0, ids + vocab, ids)`; XNNPACKQuantizer turned the
scalar of that integer add into a float constant, the ids became floats and PT2E failed ("Expected
tensor for argument #1 'indices' to have one of the following scalar types: Long, Int").
xnnpack_quant_patterns.integer_scalars_back keeps integer ops integer."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.data import fit_to_spec

from roundtrip import convert_into, cosine, run_all, runner_for, top1

VOCAB, LENGTH = 20, 8


def token_task(n: int, seed: int):
    """Token-id sequences and a learnable rule: class 0 none of tokens 3 and 5, 1 one of them, 2 both."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int32)
    return ids, ((ids == 3).any(1).astype(np.int64) + (ids == 5).any(1))


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """(Model, test Dataset, calibration Dataset, Keras logits over the test set)."""
    import keras

    from edgeship.sources import load_model

    keras.utils.set_random_seed(0)
    ids = keras.Input((LENGTH,), dtype="int32", name="ids")
    h = keras.layers.Embedding(VOCAB, 16)(ids)
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    net = keras.Model(ids, keras.layers.Dense(3)(h))
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = token_task(1000, 0)
    net.fit(x, y, epochs=10, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("embedding") / "tokens.keras"
    net.save(path)
    model = load_model(str(path))
    xte, yte = token_task(300, 1)
    test = fit_to_spec([xte], yte, model.io, "tokens:test")
    calib = fit_to_spec([x[:100]], None, model.io, "tokens:train")
    return model, test, calib, np.asarray(net.predict(xte, verbose=0))


def test_embedding_to_int8_pte(token_model, tmp_path):
    model, test, calib, reference = token_model
    assert model.io.inputs[0].dtype == "int32"
    assert top1(reference, test.labels) > 85
    path, result = convert_into("keras", "pte", model, "int8", tmp_path, calib)
    assert "int8" in result.route
    runner = runner_for(path)
    assert np.dtype(runner.inputs[0]["dtype"]) == np.int32  # the ids stay integer in the artifact
    logits = run_all(runner, test)
    assert cosine(logits, reference) > 0.99
    assert top1(reference, test.labels) - top1(logits, test.labels) <= 2.0
