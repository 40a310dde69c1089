"""Int8 hard-swish runs in XNNPACK in an int8 .tflite (issue 21; convert/tflite_hard_swish.py).

LiteRT's XNNPACK delegate takes HARD_SWISH in float only, and both .tflite routes emit one for
hard-swish (TFLiteConverter fuses Keras' x * relu6(x + 3) / 6 back into it, litert-torch lowers
aten.hardswish to it): in an int8 .tflite each ran on TFLite's own CPU kernels (Keras'
MobileNetV3-Small: 91/111 ops delegated, "HARD_SWISH x19"). Each is now int8 ADD (RELU6) / MUL / MUL.
Small models with the pattern (conv -> hard-swish -> squeeze-excite with hard-sigmoid -> conv ->
hard-swish -> dense), trained on scikit-learn's digits, from Keras and from PyTorch: the
int8 .tflite has no HARD_SWISH, its ADD/MUL ops are int8, XNNPACK takes every op (before: 10/12 Keras,
15/17 torch, "HARD_SWISH x2"), and the outputs stay as close to the float model's as with LiteRT's own
int8 HARD_SWISH (cosine on the held-out digits the same to 4 digits).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from roundtrip import convert_to

EPOCHS = 12


def _ops(path) -> collections.Counter:
    """(op, output dtype) counts, read with LiteRT's own interpreter (no delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    return collections.Counter((o["op_name"], dtype[o["outputs"][0]]) for o in it._get_ops_details())


def _cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _digits(nchw: bool):
    from edgeship.demo_models import digits_split

    xtr, ytr, xte, yte = digits_split()
    shape = (-1, 1, 8, 8) if nchw else (-1, 8, 8, 1)
    return xtr.reshape(shape), ytr, xte.reshape(shape), yte


def _trained(net, xtr, ytr, xte, epochs: int):
    """Train the torch `net` on the digits with Adam, then return its logits on xte (eval mode)."""
    import torch

    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(xte)).numpy()


def _dataset(x, io):
    from edgeship.data import Dataset

    return Dataset("digits", [x], io.inputs)


def _check(path, result, float_logits, x_test, y_test):
    """No HARD_SWISH left, XNNPACK takes every op, and the int8 logits stay close to the float ones."""
    from edgeship.runtime.standalone.tflite import Runner

    ops = _ops(path)
    assert not [op for op in ops if op[0] == "HARD_SWISH"], ops
    assert ops[("ADD", "int8")] >= 2 and ops[("MUL", "int8")] >= 4, ops  # the two hard-swishes, int8
    d = result.delegation
    assert d["coverage"] == 1.0 and d["delegated_ops"] == d["total_ops"], d
    assert not any("delegated to XNNPACK" in w for w in result.warnings), result.warnings
    runner = Runner(str(path))
    got = np.concatenate([runner.run([x[None]])[0] for x in x_test])
    assert _cosine(got, float_logits) > 0.999, _cosine(got, float_logits)  # measured 0.99993 (Keras), 0.99994 (torch); before: the same
    float_top1 = (float_logits.argmax(1) == y_test).mean()
    assert (got.argmax(1) == y_test).mean() >= float_top1 - 0.01


@pytest.fixture(scope="module")
def keras_hard_swish():
    """(Model, float logits on the held-out digits, x_test, y_test, x_train) of a small Keras net
    with Activation("hard_swish"), a squeeze-excite gate with hard_sigmoid and Conv2D(activation="hard_swish")."""
    import keras

    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = _digits(nchw=False)
    L = keras.layers
    x = keras.Input((8, 8, 1), name="image")
    h = L.Activation("hard_swish")(L.Conv2D(16, 3, padding="same")(x))
    gate = L.Conv2D(16, 1, activation="hard_sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(h))
    h = L.Conv2D(16, 3, padding="same", activation="hard_swish")(L.Multiply()([h, gate]))
    km = keras.Model(x, L.Dense(10, name="logits")(L.Flatten()(h)))
    km.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    km.fit(xtr, ytr, epochs=EPOCHS, batch_size=64, verbose=0)
    io = IOSpec([TensorSpec("image", (1, 8, 8, 1))], [TensorSpec("logits", (1, 10))])
    model = Model("hard_swish_keras", "keras", "keras", "hs", "hs", km, io, lambda xs: [np.asarray(km(xs[0]))])
    logits = np.asarray(km.predict(xte, verbose=0))
    assert (logits.argmax(1) == yte).mean() > 0.9  # trained: measured 0.982
    return model, logits, xte, yte, xtr


def test_keras_int8_hard_swish_is_delegated_and_close_to_float(keras_hard_swish, tmp_path):
    model, logits, xte, yte, xtr = keras_hard_swish
    path = tmp_path / "hs.int8.tflite"
    result = convert_to("keras", "tflite", model, "int8", path, _dataset(xtr[:100], model.io))
    _check(path, result, logits, xte, yte)


def _torch_hard_swish():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)

    class SE(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.fc, self.gate = nn.Conv2d(c, c, 1), nn.Hardsigmoid()

        def forward(self, x):
            return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardswish(), SE(16),
                         nn.Conv2d(16, 16, 3, padding=1), nn.Hardswish(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def test_torch_int8_hard_swish_is_delegated_and_close_to_float(tmp_path):
    import torch

    from edgeship.model import IOSpec, Model, TensorSpec

    xtr, ytr, xte, yte = _digits(nchw=True)
    net = _torch_hard_swish()
    logits = _trained(net, xtr, ytr, xte, EPOCHS)
    assert (logits.argmax(1) == yte).mean() > 0.9  # trained: measured 0.987

    def run(xs):
        with torch.no_grad():
            return [net(torch.from_numpy(xs[0])).numpy()]

    io = IOSpec([TensorSpec("image", (1, 1, 8, 8))], [TensorSpec("logits", (1, 10))])
    model = Model("hard_swish_torch", "torch", "torch-module", "hs", "hs", net, io, run,
                  example_inputs=[xte[:1]])
    path = tmp_path / "hs.int8.tflite"
    result = convert_to("torch", "tflite", model, "int8", path, _dataset(xtr[:100], model.io))
    _check(path, result, logits, xte, yte)


def test_rewrite_matches_litert_int8_hard_swish_on_every_input_code(keras_hard_swish, tmp_path):
    """One HARD_SWISH, its input swept over all 256 int8 codes: the three ops (run by XNNPACK) are
    within one output step of LiteRT's own int8 HARD_SWISH kernel, and as close to the exact
    x * relu6(x + 3) / 6; and the rewritten model is wholly XNNPACK's."""
    import tensorflow as tf

    from edgeship.convert.tflite_hard_swish import hard_swish_as_xnnpack_ops
    from edgeship.runtime.standalone.tflite import inspect_bytes

    import keras

    lone = keras.Sequential([keras.Input((256,)), keras.layers.Activation("hard_swish")])
    rng = np.random.default_rng(0)
    saved = tmp_path / "lone"
    lone.export(str(saved), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter.representative_dataset = lambda: ([rng.uniform(-7, 9, (1, 256)).astype(np.float32)] for _ in range(8))
    before = converter.convert()
    after, n = hard_swish_as_xnnpack_ops(before)
    assert n == 1
    ops_before, ops_after = inspect_bytes(before), inspect_bytes(after)
    assert [o["op"] for o in ops_before["ops"] if o["delegated"] is False] == ["HARD_SWISH"]
    assert ops_after["delegated_ops"] == ops_after["total_ops"] == 3, ops_after["ops"]

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def run(data, delegate: bool):
        kw = {} if delegate else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        it = Interpreter(model_content=data, **kw)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        it.set_tensor(i["index"], np.arange(-128, 128, dtype=np.int8)[None])
        it.invoke()
        return it.get_tensor(o["index"]).astype(np.int32)[0], i["quantization"], o["quantization"]

    kernel, (sx, zx), (sy, zy) = run(before, delegate=False)
    xnnpack = run(after, delegate=True)[0]
    assert np.abs(xnnpack - kernel).max() <= 1, np.abs(xnnpack - kernel).max()
    x = (np.arange(-128, 128) - zx) * sx
    exact = np.clip(np.round(x * np.clip(x + 3, 0, 6) / 6 / sy) + zy, -128, 127)
    assert np.abs(xnnpack - exact).max() <= 1 and np.abs(kernel - exact).max() <= 1


def test_torch_int8_leaky_relu_is_int8(tmp_path):
    """LeakyReLU behind a norm (a GAN generator's InstanceNorm -> LeakyReLU) had no int8 annotation in the torch ->
    .tflite route: LEAKY_RELU stayed float32 between QUANTIZE/DEQUANTIZE. It is annotated like the other
    activations."""
    import torch

    from edgeship.model import IOSpec, Model, TensorSpec

    xtr, ytr, xte, yte = _digits(nchw=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.InstanceNorm2d(8, affine=True),
                              torch.nn.LeakyReLU(0.1), torch.nn.Flatten(), torch.nn.Linear(512, 10))
    logits = _trained(net, xtr, ytr, xte, 4)
    assert (logits.argmax(1) == yte).mean() > 0.9

    def run(xs):
        with torch.no_grad():
            return [net(torch.from_numpy(xs[0])).numpy()]

    io = IOSpec([TensorSpec("image", (1, 1, 8, 8))], [TensorSpec("logits", (1, 10))])
    model = Model("leaky", "torch", "torch-module", "leaky", "leaky", net, io, run, example_inputs=[xte[:1]])
    path = tmp_path / "leaky.int8.tflite"
    convert_to("torch", "tflite", model, "int8", path, _dataset(xtr[:100], model.io))
    ops = _ops(path)
    assert ("LEAKY_RELU", "float32") not in ops and ops[("LEAKY_RELU", "int8")] == 1, ops
    from edgeship.runtime.standalone.tflite import Runner

    runner = Runner(str(path))
    got = np.concatenate([runner.run([x[None]])[0] for x in xte])
    assert _cosine(got, logits) > 0.999
