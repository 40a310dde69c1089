"""Bias correction of a Keras model (quantize/keras_bias.py) on a net built to need it: the Keras
twin of tests/planted/shift_torch.py, trained on the digits. Its 5x5 depthwise conv (frozen, no
bias, a BatchNormalization after it) has one large weight per channel and 24 small positive ones,
0.3-0.49 of the int8 step the large one sets, so per-channel int8 of the BN-folded kernel rounds
all 24 to zero: every channel loses about 7% of a positive input, a one-sided shift that the rest
of the net carries to the logits. The correction moves only the folded BN's beta (and the other
layers' biases); the int8 .tflite's SNR against the float model on held-out digits rises; the
fp32 artifact is the same bytes; --bias-correction auto is the default for a Keras model too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.data import load_data
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.quantize.keras_bias import clone, correct, leaves
from edgeship.sources import load_model

SMALL = (0.30, 0.49)  # the small weights, in int8 steps of the channel's large one (1.0)


def _train_shift_net(path, epochs: int = 30, seed: int = 0) -> float:
    """Train the planted net, save it as .keras at `path`; returns its test top-1 (%)."""
    import keras

    from edgeship.demo_models import digits_split

    keras.utils.set_random_seed(seed)
    xtr, ytr, xte, yte = digits_split()
    kernel = np.random.default_rng(seed).uniform(*SMALL, (5, 5, 16, 1)).astype(np.float32) / 127.0
    kernel[2, 2] = 1.0
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1",
                            bias_initializer=keras.initializers.Constant(0.5)),  # a positive input to dw
        keras.layers.DepthwiseConv2D(5, padding="same", use_bias=False, trainable=False, name="dw"),
        keras.layers.BatchNormalization(momentum=0.9, name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.Conv2D(16, 1, activation="relu", name="pw"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="fc"),
    ], name="shift_keras")
    model.get_layer("dw").set_weights([kernel])
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr[..., None], ytr, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    model.save(path)
    return float((np.asarray(model.predict(xte[..., None], verbose=0)).argmax(1) == yte).mean() * 100)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras-shift") / "shift_keras.keras"
    accuracy = _train_shift_net(path)
    assert accuracy > 95, accuracy  # measured: 98.4% (a real classifier, not a planted toy)
    model = load_model(str(path))
    return model, load_data("digits:train", model.io).take(200), load_data("digits:test", model.io).take(100)


def test_only_the_folded_bias_moves(planted):
    model, calib, test = planted
    before = [np.array(w) for w in model.obj.get_weights()]
    fixed, record = correct(model.obj, calib.arrays)
    assert record["layers"] == 4 and record["samples"] == 64 and record["max_abs_shift"] > 0, record
    assert all(np.array_equal(a, b) for a, b in zip(before, model.obj.get_weights()))  # the user's model: as it was
    old, new = dict(leaves(model.obj)), dict(leaves(fixed))
    assert new["dw"] is not old["dw"] and not new["dw"].use_bias  # a clone; dw still has no bias: BN's beta moves
    for name in ("conv1", "dw", "pw", "fc"):
        assert np.array_equal(np.asarray(old[name].kernel), np.asarray(new[name].kernel))
    bn_old, bn_new = old["bn"], new["bn"]
    for attr in ("gamma", "moving_mean", "moving_variance"):
        assert np.array_equal(np.asarray(getattr(bn_old, attr)), np.asarray(getattr(bn_new, attr)))
    scale = np.asarray(bn_old.gamma) / np.sqrt(np.asarray(bn_old.moving_variance) + bn_old.epsilon)
    delta = (np.asarray(bn_new.beta) - np.asarray(bn_old.beta)) / scale  # the shift of dw's own output
    # each dw channel loses its 24 small weights' share of a positive input: the correction adds it back
    assert (delta > 0).all(), delta


def _export(tmp_path, source, name, *flags):
    out = tmp_path / name
    r = CliRunner().invoke(cli, ["export", source, "--to", "tflite", "--quant", "fp32,int8", "--calib", "digits:train",
                                 "--eval", "digits:test", *flags, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, {a["recipe"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}


def test_int8_tflite_snr_rises_through_export_and_fp32_untouched(planted, tmp_path):
    model, _, _ = planted
    held_out = load_data("digits:test", model.io)  # the float model's outputs on every held-out image
    ref = model.run(held_out.arrays)
    got = {}
    for mode in ("off", "on"):
        out, arts = _export(tmp_path, model.source, mode, "--bias-correction", mode)
        got[mode] = score(ref, run_artifact(out / arts["int8"]["path"], "tflite", samples_of(held_out.arrays)))
        got[mode]["fp32_sha256"] = arts["fp32"]["sha256"]
        got[mode]["record"] = arts["int8"].get("bias_correction")
        assert "bias_correction" not in arts["fp32"]
    assert got["off"]["record"] is None
    rec = got["on"]["record"]
    assert rec["mode"] == "on" and rec["applied"] and rec["layers"] == 4 and rec["weight_qmax"] == 127, rec
    # measured on the 450 held-out digits: 12.9 -> 31.5 dB, cosine 0.9975 -> 0.99969
    assert got["on"]["snr_db"] > got["off"]["snr_db"] + 10, got
    assert got["on"]["cosine"] > got["off"]["cosine"], got
    assert got["on"]["fp32_sha256"] == got["off"]["fp32_sha256"]  # the fp32 artifact: the same bytes


def test_auto_is_the_default_for_a_keras_model(planted, tmp_path):
    model, _, _ = planted
    _, arts = _export(tmp_path, model.source, "auto")
    rec = arts["int8"]["bias_correction"]
    assert rec["mode"] == "auto" and rec["applied"], rec
    assert rec["snr_db_with"] > rec["snr_db_without"] + 10, rec  # measured: 12.4 -> 31.0 dB on the golden digits


def test_refuses_a_savedmodel(planted, tmp_path):
    """A SavedModel holds a TF graph, not Keras layers: --bias-correction on says so in one line."""
    model, _, _ = planted
    saved = tmp_path / "saved"
    model.obj.export(str(saved), format="tf_saved_model", verbose=False)
    r = CliRunner().invoke(cli, ["export", str(saved), "--to", "tflite", "--quant", "int8", "--calib", "digits:train",
                                 "--bias-correction", "on", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "Keras model" in r.output and "savedmodel" in r.output, r.output
    assert "Traceback" not in r.output


def test_a_layer_without_bias_or_bn_gets_one_in_a_nested_model(planted):
    """A 1x1 conv without a bias, inside a nested Sequential, fed by the planted dw -> BN -> ReLU6:
    the clone gets a bias there (the config's use_bias flipped), every kernel is the model's, and
    the user's model keeps its layers and weights."""
    import keras

    model, calib, _ = planted
    trained = dict(leaves(clone(model.obj)))  # the trained layers, not the fixture's own objects
    x = keras.Input((8, 8, 1))
    y = trained["conv1"](x)
    y = trained["bn"](trained["dw"](y))
    y = keras.layers.ReLU(6.0)(y)
    inner = keras.Sequential([keras.layers.Conv2D(8, 1, use_bias=False, name="project")], name="inner")
    net = keras.Model(x, keras.layers.Dense(10, name="head")(keras.layers.Flatten()(inner(y))))
    before = [np.array(w) for w in net.get_weights()]
    fixed, record = correct(net, calib.arrays)
    assert record["layers"] == 4, record
    assert all(np.array_equal(a, b) for a, b in zip(before, net.get_weights()))
    assert not dict(leaves(net))["inner/project"].use_bias
    project = dict(leaves(fixed))["inner/project"]
    assert project.use_bias and np.abs(np.asarray(project.bias)).max() > 0
    for (path, a), (_, b) in zip(leaves(net), leaves(fixed)):
        if hasattr(a, "kernel"):
            assert np.array_equal(np.asarray(a.kernel), np.asarray(b.kernel)), path
