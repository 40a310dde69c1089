"""Keras / SavedModel -> .tflite: every recipe converts, runs in the .tflite runner over the digits
test split, and stays close to the Keras model (logits) and to its held-out accuracy."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from edgeship.errors import ConversionError, InputError
from edgeship.runtime.standalone.tflite import Runner, inspect_artifact

from roundtrip import convert_to, cosine, run_all, top1

convert = partial(convert_to, "keras", "tflite")

CASES = {  # name: (recipe, int8_io)
    "fp32": ("fp32", False),
    "fp16": ("fp16", False),
    "dynamic-int8": ("dynamic-int8", False),
    "int8": ("int8", False),
    "int8-io": ("int8", True),
}


@pytest.fixture(scope="module")
def reference(keras_digits):
    t = keras_digits.test
    return keras_digits.model.run(t.batch(0, len(t)))[0]


@pytest.fixture(scope="module")
def artifacts(keras_digits, tmp_path_factory):
    """Each case converted once: {name: (path, ConvertResult, logits over digits:test)}."""
    d = tmp_path_factory.mktemp("keras_tflite")
    calib = keras_digits.train.take(200)
    out = {}
    for name, (recipe, int8_io) in CASES.items():
        path = d / f"digits.{name}.tflite"
        result = convert(keras_digits.model, recipe, path, calib, int8_io)
        out[name] = (path, result, run_all(path, keras_digits.test))
    return out


def test_fp32_matches_keras(artifacts, reference):
    path, result, logits = artifacts["fp32"]
    assert np.abs(logits - reference).max() < 1e-4
    assert cosine(logits, reference) > 0.9999
    assert result.tools.keys() == {"tensorflow", "keras"}
    assert result.delegation["coverage"] == 1.0 and result.delegation["fallback"] is None


def test_fp16_halves_the_weights_and_stays_close(artifacts, reference, keras_digits):
    fp32, fp16 = artifacts["fp32"][0], artifacts["fp16"][0]
    logits = artifacts["fp16"][2]
    assert fp16.stat().st_size < 0.55 * fp32.stat().st_size
    assert cosine(logits, reference) > 0.9999
    assert np.abs(logits - reference).max() < 0.05
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 0.5
    weights = [t for t in inspect_artifact(str(fp16))["tensors"] if t["dtype"] == "float16"]
    assert len(weights) >= 4  # conv and dense kernels stored as float16


def test_dynamic_int8_quantizes_weights_only(artifacts, reference, keras_digits):
    path, _, logits = artifacts["dynamic-int8"]
    info = inspect_artifact(str(path))
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    assert any(t["dtype"] == "int8" for t in info["tensors"])
    assert path.stat().st_size < 0.35 * artifacts["fp32"][0].stat().st_size
    assert cosine(logits, reference) > 0.99
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 1.0


def test_int8_is_full_integer_per_channel_and_keeps_accuracy(artifacts, reference, keras_digits):
    path, result, logits = artifacts["int8"]
    info = inspect_artifact(str(path))
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    ops = {op["op"] for op in info["ops"]}
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "FULLY_CONNECTED"} <= ops
    # conv kernels: int8 with one scale per output channel (16 and 32 filters)
    per_channel = sorted(len(t["quantization"]["scale"]) for t in info["tensors"]
                         if t["dtype"] == "int8" and t["quantization"] and isinstance(t["quantization"]["scale"], list))
    assert 16 in per_channel and 32 in per_channel
    assert result.warnings == []  # every op has an int8 kernel
    assert cosine(logits, reference) > 0.98
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 1.0


def test_int8_io_takes_and_gives_int8(artifacts, keras_digits):
    path, result, logits = artifacts["int8-io"]
    runner = Runner(str(path))
    (inp,), (out,) = runner.inputs, runner.outputs
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert inp["quantization"]["scale"] > 0 and out["quantization"]["scale"] > 0
    assert "int8 I/O" in result.route
    # the runner quantizes float inputs with the artifact's own scale: same answers as float I/O
    assert np.array_equal(logits.argmax(1), artifacts["int8"][2].argmax(1))
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 1.0


def test_conversion_is_deterministic(keras_digits, artifacts, tmp_path):
    for name in ("fp32", "int8"):
        recipe, int8_io = CASES[name]
        again = tmp_path / f"again.{name}.tflite"
        convert(keras_digits.model, recipe, again, keras_digits.train.take(200), int8_io)
        assert again.read_bytes() == artifacts[name][0].read_bytes(), name


def test_savedmodel_directory_converts(keras_digits, reference, tmp_path):
    from edgeship.sources import load_model

    keras_digits.model.obj.export(str(tmp_path / "saved"), verbose=False)  # dynamic batch
    model = load_model(str(tmp_path / "saved"))
    assert model.kind == "savedmodel"
    for recipe in ("fp32", "int8"):
        path = tmp_path / f"sm.{recipe}.tflite"
        convert(model, recipe, path, keras_digits.train.take(200))
        assert Runner(str(path)).inputs[0]["shape"] == [1, 8, 8, 1]  # batch pinned to 1
        logits = run_all(path, keras_digits.test)
        if recipe == "fp32":
            assert np.abs(logits - reference).max() < 1e-4
        else:
            assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 1.0


def _two_in_two_out():
    """Inputs named against alphabetical order; TF sorts signature keys and reorders outputs."""
    import keras

    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    h = keras.layers.Concatenate()([keras.layers.Dense(5)(a), keras.layers.Dense(2)(b)])
    km = keras.Model([a, b], [keras.layers.Dense(2, name="zout")(h), keras.layers.Dense(3, name="aout")(h)])
    io = IOSpec([TensorSpec("zeta", (1, 4)), TensorSpec("alpha", (1, 3))],
                [TensorSpec("zout", (1, 2)), TensorSpec("aout", (1, 3))])
    return Model("two", "keras", "keras", "two", "two", km, io, lambda xs: [np.asarray(o) for o in km(xs)])


def test_inputs_and_outputs_keep_the_models_order(tmp_path):
    from edgeship.data import Dataset

    model = _two_in_two_out()
    rng = np.random.default_rng(0)
    calib = Dataset("random", [rng.standard_normal((64, 4)).astype(np.float32),
                               rng.standard_normal((64, 3)).astype(np.float32)], model.io.inputs)
    for recipe in ("fp32", "int8"):
        path = tmp_path / f"two.{recipe}.tflite"
        convert(model, recipe, path, calib)
        runner = Runner(str(path))
        assert [t["shape"] for t in runner.inputs] == [[1, 4], [1, 3]]
        assert [t["shape"] for t in runner.outputs] == [[1, 2], [1, 3]]
        x = calib.sample(5)
        for got, want in zip(runner.run(x), model.run(x)):
            assert np.abs(got - want).max() < (1e-5 if recipe == "fp32" else 0.1)


def test_unsupported_op_is_one_clear_error(tmp_path):
    import keras
    import tensorflow as tf

    from edgeship.model import IOSpec, Model, TensorSpec

    class SingularValues(keras.layers.Layer):
        def call(self, x):
            return tf.linalg.svd(x, compute_uv=False)

    inp = keras.Input((4, 4), name="x")
    km = keras.Model(inp, keras.layers.Dense(3)(SingularValues()(inp)))
    model = Model("svd", "keras", "keras", "svd", "svd", km, IOSpec([TensorSpec("x", (1, 4, 4))]), None)
    with pytest.raises(ConversionError) as e:
        convert(model, "fp32", tmp_path / "svd.tflite")
    assert "'tf.Svd' op is neither a custom op nor a flex op" in e.value.message
    assert "\n" not in e.value.message and "loc(" not in e.value.message
    assert "builtin kernel" in e.value.hint
    assert not (tmp_path / "svd.tflite").exists()


def test_conversion_output_is_quiet(keras_digits, tmp_path, capfd):
    convert(keras_digits.model, "dynamic-int8", tmp_path / "q.tflite")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_dynamic_shape_is_refused(keras_digits, tmp_path):
    # (a first dimension other than 1 is an input taken whole: tests/test_input_shapes.py)
    from dataclasses import replace

    from edgeship.model import IOSpec

    spec = replace(keras_digits.model.io.inputs[0], shape=(1, -1, 8, 1))
    model = replace(keras_digits.model, io=IOSpec([spec], keras_digits.model.io.outputs))
    with pytest.raises(InputError, match="needs static shapes"):
        convert(model, "fp32", tmp_path / "b4.tflite")


def test_int8_of_a_bidirectional_lstm_unrolls_it_and_converts(tmp_path):
    """TensorFlow's converter died (SIGSEGV) calibrating the WHILE loop of a Bidirectional(LSTM); the route
    now unrolls recurrent layers for int8 (the time axis is static), says so, and the rest is as before."""
    import keras

    from edgeship.data import Dataset
    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    seq = keras.Input((12, 4), name="seq")
    km = keras.Model(seq, keras.layers.Dense(3)(keras.layers.Bidirectional(keras.layers.LSTM(8))(seq)))
    model = Model("bilstm", "keras", "keras", "bilstm", "bilstm", km,
                  IOSpec([TensorSpec("seq", (1, 12, 4))], [TensorSpec("y", (1, 3))]),
                  lambda xs: [np.asarray(km(xs[0]))])
    x = np.random.default_rng(0).standard_normal((40, 12, 4)).astype(np.float32)
    path = tmp_path / "bilstm.int8.tflite"
    result = convert(model, "int8", path, Dataset("x", [x[:32]], model.io.inputs))
    assert any(w.startswith("unrolled for int8: bidirectional") for w in result.warnings), result.warnings
    assert not any("WHILE" in w for w in result.warnings if "delegated" in w)  # no loop left on the CPU kernels
    runner = Runner(str(path))
    for i in range(32, 40):
        assert cosine(runner.run([x[i : i + 1]])[0], model.run([x[i : i + 1]])[0]) > 0.99
    assert km.layers[1].forward_layer.unroll is False  # the user's model is left as it was


def test_int8_unrolls_a_recurrent_layer_inside_a_nested_model(tmp_path):
    """The unroll looked at the top level only: a GRU inside a nested Sequential kept its WHILE loop (and
    TensorFlow's calibrator its crash). The clone is recursive now."""
    import keras

    from edgeship.data import Dataset
    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((10, 4)), keras.layers.GRU(8)], name="encoder")
    seq = keras.Input((10, 4), name="seq")
    km = keras.Model(seq, keras.layers.Dense(3)(encoder(seq)))
    model = Model("nested", "keras", "keras", "nested", "nested", km,
                  IOSpec([TensorSpec("seq", (1, 10, 4))], [TensorSpec("y", (1, 3))]),
                  lambda xs: [np.asarray(km(xs[0]))])
    x = np.random.default_rng(1).standard_normal((40, 10, 4)).astype(np.float32)
    path = tmp_path / "nested.int8.tflite"
    result = convert(model, "int8", path, Dataset("x", [x[:32]], model.io.inputs))
    assert any(w.startswith("unrolled for int8:") and "gru" in w for w in result.warnings), result.warnings
    assert not any("WHILE" in w for w in result.warnings if "delegated" in w)
    runner = Runner(str(path))
    for i in range(32, 40):
        assert cosine(runner.run([x[i : i + 1]])[0], model.run([x[i : i + 1]])[0]) > 0.99
    assert encoder.layers[0].unroll is False  # the user's model is left as it was


def test_the_fp32_twin_of_a_recurrent_model_is_unrolled_as_its_int8_so_layers_can_be_ranked(tmp_path):
    """Accuracy-aware mode (--max-drop) and diff match an int8 .tflite's tensors with its fp32 twin's, op by
    op. The int8 unrolls a recurrent layer; the twin kept its WHILE loop, so on a Keras text model
    (langid_keras) --max-drop ended in 'different op sequences (int8: 920 compute ops, fp32: 62)'. The twin
    now has the int8's structure, and the ranking gives a row per layer."""
    import keras

    from edgeship.data import Dataset
    from edgeship.model import IOSpec, Model, TensorSpec
    from edgeship.convert import get_route
    from edgeship.convert.base import ConvertOptions
    from edgeship.quantize.rankers import fp32_twin, ranker_for

    keras.utils.set_random_seed(0)
    seq = keras.Input((10, 4), name="seq")
    h = keras.layers.GRU(8, name="gru")(keras.layers.Dense(6, name="proj")(seq))
    km = keras.Model(seq, keras.layers.Dense(3, name="head")(h))
    model = Model("gru", "keras", "keras", "gru", "gru", km,
                  IOSpec([TensorSpec("seq", (1, 10, 4))], [TensorSpec("y", (1, 3))]),
                  lambda xs: [np.asarray(km(xs[0]))])
    x = np.random.default_rng(2).standard_normal((36, 10, 4)).astype(np.float32)
    calib = Dataset("x", [x[:32]], model.io.inputs)
    path = tmp_path / "gru.int8.tflite"
    convert(model, "int8", path, calib)
    feeds = [[x[i : i + 1]] for i in range(32, 36)]
    route = get_route("keras", "tflite").load()
    ranker = ranker_for(model, "tflite", calib, feeds, fp32=lambda: fp32_twin(model, route, ConvertOptions()))
    rows = ranker.rank(artifact=path)
    assert {r.name for r in rows} >= {"proj", "gru", "head"}, rows
