"""Keras / SavedModel -> .onnx with tf2onnx and onnxruntime's quantization tools: fp32 matches
Keras in the model's own NHWC layout, int8 keeps the held-out accuracy, bytes are reproducible."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from edgeship.convert import ConvertOptions
from edgeship.errors import UnsupportedError
from edgeship.quantize import get_recipe
from edgeship.runtime.standalone.onnx import Runner, inspect_artifact

from roundtrip import convert_to, run_all, top1

convert = partial(convert_to, "keras", "onnx")


@pytest.fixture(scope="module")
def reference(keras_digits):
    t = keras_digits.test
    return keras_digits.model.run(t.batch(0, len(t)))[0]


@pytest.fixture(scope="module")
def artifacts(keras_digits, tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_onnx")
    out = {}
    for recipe in ("fp32", "int8"):
        path = d / f"digits.{recipe}.onnx"
        result = convert(keras_digits.model, recipe, path, keras_digits.train.take(200))
        out[recipe] = (path, result, run_all(path, keras_digits.test))
    return out


def test_fp32_matches_keras_in_nhwc(artifacts, reference, keras_digits):
    path, result, logits = artifacts["fp32"]
    runner = Runner(str(path))
    assert runner.inputs[0]["name"] == "image" and runner.inputs[0]["shape"] == [1, 8, 8, 1]
    assert runner.outputs[0]["shape"] == [1, 10]
    assert np.abs(logits - reference).max() < 1e-4
    assert top1(logits, keras_digits.test.labels) == pytest.approx(keras_digits.float_accuracy)
    assert result.route.startswith("tf2onnx (opset 17) -> float32")
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"} <= result.tools.keys()


def test_int8_qdq_keeps_accuracy(artifacts, keras_digits):
    path, _, logits = artifacts["int8"]
    info = inspect_artifact(str(path))
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    assert any(o["op"] == "QuantizeLinear" for o in info["ops"])
    assert path.stat().st_size < 0.4 * artifacts["fp32"][0].stat().st_size
    assert abs(top1(logits, keras_digits.test.labels) - keras_digits.float_accuracy) <= 1.0


def test_conversion_is_deterministic(keras_digits, artifacts, tmp_path):
    for recipe in ("fp32", "int8"):
        again = tmp_path / f"again.{recipe}.onnx"
        convert(keras_digits.model, recipe, again, keras_digits.train.take(200))
        assert again.read_bytes() == artifacts[recipe][0].read_bytes(), recipe


def test_savedmodel_converts(keras_digits, reference, tmp_path):
    from edgeship.sources import load_model

    saved = tmp_path / "saved"
    keras_digits.model.obj.export(str(saved), format="tf_saved_model", verbose=False)
    model = load_model(str(saved))
    assert model.kind == "savedmodel"
    path = tmp_path / "sm.fp32.onnx"
    convert(model, "fp32", path)
    assert np.abs(run_all(path, keras_digits.test.take(50)) - reference[:50]).max() < 1e-4


def test_torch_models_are_refused_with_one_line(torch_digits, tmp_path):
    from edgeship.convert.keras_onnx import convert as keras_to_onnx
    from edgeship.errors import InputError

    with pytest.raises(InputError) as e:
        keras_to_onnx(torch_digits.model, get_recipe("fp32"), None, tmp_path / "x.onnx", ConvertOptions())
    assert "takes a Keras model or a SavedModel" in e.value.message


def test_unknown_recipe_names_the_supported_ones(keras_digits, tmp_path):
    import dataclasses

    from edgeship.convert.keras_onnx import convert as keras_to_onnx

    int16x8 = dataclasses.replace(get_recipe("int8"), name="int3x8")  # no such recipe
    with pytest.raises(UnsupportedError) as e:
        keras_to_onnx(keras_digits.model, int16x8, keras_digits.train.take(20), tmp_path / "x.onnx", ConvertOptions())
    assert "recipe 'int3x8' is not available" in e.value.message
    assert "fp32, fp16, dynamic-int8, int8" in e.value.message


def test_constants_captured_by_the_call_are_initializers_not_inputs(tmp_path):
    """A Normalization layer given its mean and variance holds them as constant tensors, which the traced call
    captures; tf2onnx left them as two more graph inputs, and the .onnx asked for three inputs. They are
    initializers now: one input, Keras' numbers."""
    import keras

    from edgeship.sources import keras_in_cache, keras_model_as_loaded

    keras.utils.set_random_seed(0)
    img = keras.Input((8, 8, 3), name="img")
    x = keras.layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.04, 0.05, 0.06])(keras.layers.Rescaling(1 / 255)(img))
    net = keras.Model(img, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3)(x))))
    model = keras_model_as_loaded(net, "normalized", keras_in_cache(net))
    path = tmp_path / "normalized.fp32.onnx"
    convert(model, "fp32", path)
    runner = Runner(str(path))
    assert [i["name"] for i in runner.inputs] == ["img"]
    x = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    assert np.abs(runner.run([x])[0] - np.asarray(net(x))).max() < 1e-4
