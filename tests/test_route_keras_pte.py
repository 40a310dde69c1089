"""Keras -> .pte: every recipe on a Keras CNN trained on digits, converted in a child process under
Keras' torch backend and run with the ExecuTorch runner on the held-out split."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from edgeship.convert.base import ConvertOptions
from edgeship.errors import ConversionError, UnsupportedError
from edgeship.model import IOSpec, Model, TensorSpec
from edgeship.quantize.recipes import RECIPES
from edgeship.runtime.standalone.executorch import Runner

from roundtrip import convert_into, run_all, top1

convert = partial(convert_into, "keras", "pte")

FP32_MAX_ABS = 1e-4


@pytest.fixture(scope="module")
def artifacts(keras_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_pte")
    cache = {}

    def get(recipe: str, int8_io: bool = False):
        if (recipe, int8_io) not in cache:
            calib = keras_digits.train.take(200) if RECIPES[recipe].needs_calibration else None
            cache[(recipe, int8_io)] = convert(keras_digits.model, recipe, out, calib, int8_io)
        return cache[(recipe, int8_io)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fp32", "fp16", "dynamic-int8", "int8"])
def test_recipe_matches_the_keras_model(recipe, artifacts, keras_digits):
    path, result = artifacts(recipe)
    reference = keras_digits.model.run(keras_digits.test.batch(0, len(keras_digits.test)))[0]
    runner = Runner(path)
    assert runner.inputs[0]["shape"] == [1, 8, 8, 1]  # NHWC, as the Keras model takes it
    logits = run_all(runner, keras_digits.test)
    floor = RECIPES[recipe]
    cos = (logits * reference).sum(1) / (np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1))
    assert cos.min() > floor.min_cosine
    assert keras_digits.float_accuracy - top1(logits, keras_digits.test.labels) <= floor.max_top1_drop
    if recipe == "fp32":
        assert np.abs(logits - reference).max() < FP32_MAX_ABS
    assert result.delegation["lowering_error"] is None and result.delegation["partitions"] == 1
    # the graph passes leave XNNPACK everything but fp16's two boundary casts
    assert result.delegation["total_ops"] - result.delegation["delegated_ops"] == (2 if recipe == "fp16" else 0)
    assert result.route.startswith("Keras (torch backend) -> torch.export -> graph passes")
    assert set(result.tools) == {"torch", "executorch", "torchao", "keras"}


@pytest.mark.slow
def test_dense_layers_are_quantized(artifacts):
    """Keras Dense exports as matmul + add; the matmul -> linear pass is what lets the quantizer
    make its kernel int8: the 512x64 kernel dominates, so int8 artifacts are about 1/3 the size."""
    fp32 = artifacts("fp32")[0].stat().st_size
    assert artifacts("dynamic-int8")[0].stat().st_size < 0.4 * fp32
    assert artifacts("int8")[0].stat().st_size < 0.4 * fp32


@pytest.mark.slow
def test_int8_io(artifacts, keras_digits):
    path, result = artifacts("int8", int8_io=True)
    # the input quantize was moved ahead of the NHWC -> NCHW permute, so the input is int8 too
    assert all(q is not None for q in result.io_quantization["inputs"] + result.io_quantization["outputs"])
    runner = Runner(path)
    assert [t["dtype"] for t in runner.inputs + runner.outputs] == ["int8", "int8"]
    logits = run_all(runner, keras_digits.test)
    assert keras_digits.float_accuracy - top1(logits, keras_digits.test.labels) <= 1.0


@pytest.mark.slow
def test_main_process_keeps_its_keras_backend(artifacts, keras_digits):
    import keras

    artifacts("fp32")
    assert keras.backend.backend() == "tensorflow"  # the torch backend lived in the child only


def keras_model(tmp_path, kind="keras", suffix=".keras", content=None) -> Model:
    path = tmp_path / f"model{suffix}"
    if content is not None:
        path.write_bytes(content)
    io = IOSpec([TensorSpec("image", (1, 8, 8, 1))], [TensorSpec("logits", (1, 10))])
    return Model("m", "keras", kind, str(path), str(path), None, io, lambda x: x, [np.zeros((1, 8, 8, 1), np.float32)])


def test_savedmodel_is_unsupported_with_the_way_out(tmp_path):
    with pytest.raises(UnsupportedError) as err:
        convert(keras_model(tmp_path, kind="savedmodel", suffix=""), "fp32", tmp_path)
    assert "SavedModel -> pte is not supported" in err.value.message and ".keras" in err.value.hint


def test_other_files_are_unsupported(tmp_path):
    with pytest.raises(UnsupportedError, match=r"needs a \.keras or \.h5 file"):
        convert(keras_model(tmp_path, suffix=".pb"), "fp32", tmp_path)


def test_child_failure_is_one_line(tmp_path):
    model = keras_model(tmp_path, content=b"this is not a zip archive")
    with pytest.raises(ConversionError) as err:
        convert(model, "fp32", tmp_path)
    message = str(err.value)
    assert message.startswith("Keras (torch backend) cannot load") and "model.keras" in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.slow
def test_functional_model_with_two_inputs_and_a_skip_connection(tmp_path):
    """Functional models go through the same per-layer wrapping as Sequential ones: two inputs, a
    shared branch, a residual Add; fp32 matches Keras, and int8 can keep one layer in float."""
    import keras

    from edgeship.data import Dataset
    from edgeship.sources import load_model

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(image)
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="join")([x, keras.layers.Dense(4, name="side")(extra)])
    out = keras.layers.Dense(10, name="head")(x)
    path = tmp_path / "two_inputs.keras"
    keras.Model([image, extra], out, name="two_inputs").save(path)
    model = load_model(str(path))
    rng = np.random.default_rng(0)
    arrays = [rng.random((64, 8, 8, 1), np.float32), rng.random((64, 4), np.float32)]
    feeds = [[a[i:i + 1] for a in arrays] for i in range(8)]
    reference = np.concatenate([np.asarray(model.obj([f[0], f[1]])) for f in feeds])

    from edgeship.convert.keras_pte import convert as keras_pte_convert
    from edgeship.convert.keras_pte import layer_errors

    fp32 = tmp_path / "fp32.pte"
    keras_pte_convert(model, RECIPES["fp32"], None, fp32, ConvertOptions())
    got = np.concatenate([Runner(str(fp32)).run(f)[0] for f in feeds])
    assert np.abs(got - reference).max() < FP32_MAX_ABS

    calib = Dataset("random", arrays, model.io.inputs)
    int8 = tmp_path / "int8.pte"
    result = keras_pte_convert(model, RECIPES["int8"], calib, int8, ConvertOptions(float_layers=("head",)))
    assert "kept float: head" in result.route
    rows = layer_errors(model, calib, feeds, ("head",))
    assert {r.name for r in rows} == {"conv_a", "conv_b", "side", "head"}
    assert next(r for r in rows if r.name == "head").kind == "Dense"
