"""A Keras depthwise conv followed by BatchNormalization (every MobileNet) reaches .onnx as
Conv -> Mul -> Add by per-channel constants: tf2onnx does not fold the BatchNorm into a depthwise conv.
quantize_static then gave the conv's output one int8 scale for channels the Mul rescales by orders of
magnitude, and the small ones were lost (the zoo's Keras MobileNetV2: cosine 0.68). The int8 route now runs
onnxruntime's basic fusions first, which fold the Mul and Add into the conv's per-channel weights and bias."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from edgeship.data import fit_to_spec

from roundtrip import convert_to, cosine, run_all, top1

convert = partial(convert_to, "keras", "onnx")


@pytest.fixture(scope="module")
def depthwise_bn(tmp_path_factory):
    """(Model, digits:test, calib, Keras logits): Conv2D -> DepthwiseConv2D -> BatchNormalization -> ReLU ->
    Flatten -> Dense, trained on scikit-learn's digits; then channel k of the depthwise kernel is scaled by
    10^(3k/15) and the BatchNorm's statistics by the same factor, which leaves the function as it was and
    spreads the conv's per-channel ranges over three orders of magnitude, as trained MobileNets have them."""
    import keras

    from edgeship.demo_models import digits_split
    from edgeship.sources import load_model

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = digits_split()
    xtr, xte = (a.reshape(len(a), 8, 8, 1) for a in (xtr, xte))
    net = keras.Sequential([keras.Input((8, 8, 1), name="image"), keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                            keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False),
                            keras.layers.BatchNormalization(), keras.layers.ReLU(),
                            keras.layers.Flatten(), keras.layers.Dense(10)])
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(xtr, ytr, epochs=20, batch_size=64, verbose=0)
    depthwise, bn = net.layers[1], net.layers[2]
    scale = (10.0 ** (3 * np.arange(16) / 15)).astype(np.float32)
    (kernel,) = depthwise.get_weights()
    gamma, beta, mean, var = bn.get_weights()
    before = np.asarray(net.predict(xte, verbose=0))
    depthwise.set_weights([kernel * scale[None, None, :, None]])
    bn.set_weights([gamma, beta, mean * scale, (var + bn.epsilon) * scale**2 - bn.epsilon])
    after = np.asarray(net.predict(xte, verbose=0))
    assert cosine(after, before) > 0.9999
    path = tmp_path_factory.mktemp("dwbn") / "dwbn.keras"
    net.save(path)
    model = load_model(str(path))
    return (model, fit_to_spec([xte], yte, model.io, "digits:test"),
            fit_to_spec([xtr[:200]], None, model.io, "digits:train"), after)


def test_depthwise_batchnorm_int8_onnx_keeps_accuracy(depthwise_bn, tmp_path):
    import onnx

    model, test, calib, reference = depthwise_bn
    assert top1(reference, test.labels) > 85
    path = tmp_path / "dwbn.int8.onnx"
    convert(model, "int8", path, calib)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Mul" not in ops  # the BatchNorm's scale is in the conv's weights
    logits = run_all(path, test)
    assert cosine(logits, reference) > 0.99
    assert top1(reference, test.labels) - top1(logits, test.labels) <= 2.0


def test_the_fp32_onnx_is_left_as_the_exporter_wrote_it(depthwise_bn, tmp_path):
    import onnx

    model, test, _, reference = depthwise_bn
    path = tmp_path / "dwbn.fp32.onnx"
    convert(model, "fp32", path)
    assert "Mul" in [n.op_type for n in onnx.load(str(path)).graph.node]
    assert np.abs(run_all(path, test) - reference).max() < 1e-3
