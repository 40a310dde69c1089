"""Keras' exact GELU (Dense(activation="gelu"), erf-based) to .onnx: tf2onnx writes it with an Erfc
node, an op ONNX does not define, and onnxruntime refused the model. keras_onnx.erfc_as_erf
rewrites it as 1 - Erf(x): the .onnx loads and matches Keras."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from edgeship.data import fit_to_spec

from roundtrip import convert_to, cosine, run_all, top1

convert = partial(convert_to, "keras", "onnx")


@pytest.fixture(scope="module")
def gelu_mlp(tmp_path_factory):
    """(Model, digits:test Dataset, Keras logits over it): an MLP with two exact-GELU layers, trained
    on scikit-learn's digits, saved as .keras and loaded back."""
    import keras

    from edgeship.demo_models import digits_split
    from edgeship.sources import load_model

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = (a.reshape(len(a), -1) if a.ndim == 3 else a for a in digits_split())
    net = keras.Sequential([keras.Input((64,), name="pixels"), keras.layers.Dense(32, activation="gelu"),
                            keras.layers.Dense(32, activation=keras.activations.gelu), keras.layers.Dense(10)])
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(xtr, ytr, epochs=15, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("gelu") / "gelu_mlp.keras"
    net.save(path)
    model = load_model(str(path))
    test = fit_to_spec([xte], yte, model.io, "digits:test")
    calib = fit_to_spec([xtr[:100]], None, model.io, "digits:train")
    return model, test, calib, np.asarray(net.predict(xte, verbose=0))


def test_exact_gelu_loads_in_onnxruntime_and_matches_keras(gelu_mlp, tmp_path):
    import onnx

    model, test, _, reference = gelu_mlp
    assert top1(reference, test.labels) > 90
    path = tmp_path / "gelu.fp32.onnx"
    convert(model, "fp32", path)  # before the rewrite: "onnxruntime cannot load ... No Op registered for Erfc"
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Erfc" not in ops and ops.count("Erf") == 2
    logits = run_all(path, test)
    assert np.abs(logits - reference).max() < 1e-4


def test_exact_gelu_int8(gelu_mlp, tmp_path):
    model, test, calib, reference = gelu_mlp
    path = tmp_path / "gelu.int8.onnx"
    convert(model, "int8", path, calib)
    logits = run_all(path, test)
    assert cosine(logits, reference) > 0.99
    assert top1(reference, test.labels) - top1(logits, test.labels) <= 2.0
