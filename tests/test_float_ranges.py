"""--keep-float-ranges (quantize/ranges.py): int8 keeps float the layers whose activations one int8
scale per tensor cannot hold, found on the float model, by default.

The pattern: a fixed "spectrum" front end (a linear projection whose bins decay over five decades,
power, log) before a small classifier trained here on scikit-learn's digits. The power spans ten
decades: at one int8 step of range/255 nearly all of it rounds to zero, the log turns that into
-13.8, and the int8 model is lost. Exported to .onnx (the fastest int8 route here) with and without
the mechanism; a normal CNN (conftest's torch_digits) keeps nothing float.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.errors import CheckFailed
from edgeship.quantize import ranges

BINS = 96


def _spectrum_net():
    """(trained nn.Module, (train x, train y), (test x, test y), float top-1 %)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch import nn

    class FrontEnd(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.proj = nn.Linear(64, BINS, bias=False)
            decay = 10.0 ** (-5.0 * torch.arange(BINS, dtype=torch.float32) / BINS)  # bins over five decades
            with torch.no_grad():
                self.proj.weight.copy_(torch.randn(BINS, 64, generator=g) / 8 * decay[:, None])
            self.proj.weight.requires_grad_(False)

        def forward(self, x):  # (b, 64) -> a one-channel "spectrogram" (b, 1, BINS), as audio front ends lay it out
            y = self.proj(x).unsqueeze(1)
            return torch.log(y * y + 1e-6)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.frontend = FrontEnd()
            self.head = nn.Sequential(nn.Linear(BINS, 32), nn.ReLU(), nn.Linear(32, 10))

        def forward(self, x):
            return self.head(self.frontend(x).flatten(1) / 8)

    digits = load_digits()
    x = digits.data.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-2)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean() * 100)
    return net, (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64)), acc


@pytest.fixture(scope="module")
def spectrum():
    return _spectrum_net()


def _export(net, train, test, out, mode):
    import torch

    import edgeship

    try:
        bundle = edgeship.export(net, (torch.zeros(1, 64),), to="onnx", quant="int8", calib=train[0][:200],
                                 eval=(test[0][:100], test[1][:100]), out=out, force=True, golden_samples=100,
                                 keep_float_ranges=mode)  # CLE and bias correction auto, as a user gets them
        return bundle.manifest["artifacts"][0], True
    except CheckFailed as e:  # below its floor: export's verdict, the bundle written
        return e.result.manifest["artifacts"][0], False


def test_statistic_on_a_tensor_int8_cannot_hold():
    rng = np.random.default_rng(0)
    normal = rng.standard_normal(10000)
    assert ranges.zeroed_share(normal)[0] < 0.05  # a Gaussian at +-4 sigma: ~1% round to zero
    # a power spectrum's span (kws_cnn's: 3e-15 to 471): all below 10^0.29 (half a step) round to 0
    spectrum = 10.0 ** rng.uniform(-15, 3, 10000)
    assert ranges.zeroed_share(spectrum)[0] == pytest.approx(15.29 / 18, abs=0.02)
    assert ranges.zeroed_share(spectrum)[0] > ranges.THRESHOLD
    masked = np.where(rng.random(100) < 0.2, -np.inf, rng.standard_normal(100))
    assert ranges.zeroed_share(masked)[0] == 1.0  # a -inf mask: no value survives one scale


def test_the_front_end_is_found_and_a_normal_cnn_keeps_nothing(spectrum, torch_digits):
    import torch

    from edgeship.sources import model_from_torch

    net, train, _, _ = spectrum
    model = model_from_torch(net, (torch.zeros(1, 64),), "spectrum", "python:Net", None, None)
    found = ranges.find(model, [train[0]])
    assert found.layers == ("frontend",), found.record()
    flagged = {a.op for a in found.flagged}
    assert {"mul", "add"} <= flagged, found.record()  # the power and the mel-like offset before the log
    assert all(a.layer.startswith("frontend") for a in found.flagged)

    cnn = ranges.find(torch_digits.model, [torch_digits.train.arrays[0]])
    assert cnn.layers == () and cnn.flagged == [] and cnn.measured >= 6, cnn.record()
    assert ranges.find(torch_digits.model, [torch_digits.train.arrays[0]], "off").record()["skipped"]


def test_int8_misses_its_floor_without_and_passes_with(spectrum, tmp_path):
    net, train, test, acc = spectrum
    assert acc > 80  # 86% held out: a trained classifier, not a random one
    off, off_ok = _export(net, train, test, tmp_path / "off", "off")
    on, on_ok = _export(net, train, test, tmp_path / "auto", "auto")

    # without: the power spectrum in int8 loses the model (seen red: this was export's only int8)
    assert not off_ok and off["smoke"]["status"] == "below_floor", off["smoke"]
    assert off["smoke"]["cosine"] < 0.9
    assert off["float_ranges"]["mode"] == "off" and off["float_ranges"]["kept_float"] == []
    assert "kept float" not in off["route"]

    # with: the front end float, the classifier int8, within the int8 floor
    assert on_ok and on["smoke"]["status"] == "pass", on["smoke"]
    assert on["smoke"]["cosine"] >= 0.98
    assert on["float_ranges"]["kept_float"] == ["frontend"]
    assert on["float_ranges"]["why"] and all(w["zeroed"] > ranges.THRESHOLD for w in on["float_ranges"]["why"])
    assert "kept float: frontend" in on["route"]
    # bias correction's fx-traced model would lose the 'frontend' module (its power and log then int8 again)
    assert "rewrites" in on["float_ranges"] and "bias_correction" not in on, on.get("bias_correction")
    import onnx

    ops = [n.op_type for n in onnx.load(tmp_path / "auto" / on["path"]).graph.node]
    assert "QuantizeLinear" in ops and "Log" in ops  # still int8 where it can be


def test_a_padding_mask_of_minus_inf_keeps_attention_float_in_the_onnx_only():
    """A -inf padding mask read by the fused attention op: the .onnx splits it into MatMul, Add, Softmax and
    onnxruntime quantizes the Add (scale inf; langid_transformer int8 .onnx cosine 0.65 without); .pte and
    .tflite leave the fused op float, so they keep nothing."""
    import torch
    from torch import nn

    from edgeship.sources import model_from_torch

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = nn.Embedding(20, 16)
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1,
                                             enable_nested_tensor=False)
            self.out = nn.Linear(16, 4)

        def forward(self, ids):
            return self.out(self.enc(self.emb(ids), src_key_padding_mask=ids == 0).mean(1))

    ids = np.random.default_rng(0).integers(1, 20, (8, 12)).astype(np.int64)
    ids[:, 9:] = 0  # padding
    net = Tagger().eval()
    model = model_from_torch(net, (torch.from_numpy(ids[:1]),), "tagger", "python:Tagger", None, None)
    found = ranges.find(model, [ids])
    masks = [a for a in found.flagged if a.spread == float("inf")]
    assert masks and all(a.lo == -np.inf and a.targets == ("onnx",) for a in masks), found.record()
    assert found.for_target("onnx").layers == ("enc.layers.0.self_attn",)
    assert found.for_target("tflite").layers == () and found.for_target("pte").layers == ()
    assert ".onnx only" in found.line()


def test_a_keras_cnn_is_measured_per_layer_keeps_nothing_and_keras_says_nothing(keras_digits, recwarn):
    """The Keras side of the statistic, on a trained Keras CNN (conftest: the demo's digits CNN saved
    as .keras): every top-level layer with a float output is measured, a normal CNN keeps nothing
    float, and the probe is fed as Keras built it (a list), so Keras warns of no input structure
    mismatch (it did: a bare tensor printed Keras' UserWarning in the demo's terminal)."""
    from sklearn.datasets import load_digits

    from edgeship.sources import load_model

    model = load_model(keras_digits.source)
    x = (load_digits().images[:32, :, :, None] / 16.0).astype(np.float32)
    finding = ranges.find(model, [x])
    assert finding.skipped is None and finding.samples == 32
    assert finding.measured >= 3 and finding.layers == () and finding.flagged == []
    assert not [w for w in recwarn if "structure of `inputs`" in str(w.message)]


# --- Keras: nested models (a base model used as a layer, the transfer-learning shape) ----------------

def _keras_nested_digits():
    """A digits CNN whose convolutions are a nested Functional model and whose classifier is a nested
    Sequential, trained here on scikit-learn's digits: (outer Functional model, features, head, test x, test y,
    held-out top-1 %)."""
    import keras

    from edgeship.demo_models import KERAS_INPUT, digits_split

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = digits_split()
    x = keras.Input(KERAS_INPUT)
    f = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(x)
    f = keras.layers.ReLU(name="relu_a")(f)
    f = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(f)
    f = keras.layers.MaxPooling2D(2, name="pool")(f)
    features = keras.Model(x, f, name="features")
    head = keras.Sequential([keras.layers.Flatten(name="flat"), keras.layers.Dense(10, name="logits")], name="head")
    image = keras.Input(KERAS_INPUT, name="image")
    model = keras.Model(image, head(features(image)), name="nested_digits")
    model.compile(optimizer=keras.optimizers.Adam(5e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr[..., None], ytr, epochs=10, batch_size=64, verbose=0)
    acc = float((np.asarray(model.predict(xte[..., None], verbose=0)).argmax(1) == yte).mean() * 100)
    return model, features, head, xte[..., None], yte, acc


INNER = ["features/conv_a", "features/relu_a", "features/conv_b", "features/pool", "head/logits"]


def test_a_keras_model_with_nested_models_is_measured_per_inner_layer(tmp_path, recwarn):
    """A nested model's `layer.output` is its own graph's tensor, not connected to the outer inputs: the
    top-level probe failed ('Output with path `0` is not connected to `inputs`'), the finding was 'skipped'
    and int8 was made with nothing measured (the zoo's Keras MobileNetV2, a base model inside a Functional
    model, measured 0 activations). Now every layer inside is measured, through Functional-in-Functional,
    Sequential-in-Functional, Functional-in-Sequential and two levels deep; a normal CNN keeps nothing."""
    import keras

    from edgeship.sources import load_model

    model, features, head, x, _, acc = _keras_nested_digits()
    assert acc > 90  # a trained classifier, not a random one
    path = tmp_path / "nested_digits.keras"
    model.save(path)
    recwarn.clear()
    finding = ranges.find(load_model(str(path)), [x[:32]])
    assert finding.skipped is None and finding.samples == 32, finding.record()
    assert finding.measured == len(INNER) and finding.layers == () and finding.flagged == [], finding.record()
    assert not [w for w in recwarn if "keras" in str(w.filename) or "keras" in str(w.message).lower()], \
        [str(w.message) for w in recwarn]

    samples = [[x[i : i + 1]] for i in range(8)]
    acts = ranges.keras_activations(model, samples)
    assert [a.name for a in acts] == INNER
    conv_a = acts[0]
    assert conv_a.layer == "features/conv_a" and conv_a.keep == ("features",)  # the routes keep top-level layers
    assert acts[1].layer == "features/conv_a" and acts[1].keep == ("features",)  # a ReLU: its weighted producer
    seq = keras.Sequential([keras.Input(x.shape[1:]), features, head], name="seq_of_nested")
    assert [a.name for a in ranges.keras_activations(seq, samples)] == INNER
    image = keras.Input(x.shape[1:])
    deep = keras.Model(image, keras.Sequential([features, head], name="body")(image), name="two_deep")
    assert [a.name for a in ranges.keras_activations(deep, samples)] == ["body/" + n for n in INNER]
    # the same values, however they are wrapped
    again = {a.name: a for a in ranges.keras_activations(deep, samples)}
    for a in acts:
        assert again["body/" + a.name].hi == pytest.approx(a.hi, rel=1e-5)


def _keras_nested_spectrum():
    """The spectrum front end of _spectrum_net as a nested Keras Functional model (a fixed projection whose
    bins decay over five decades, laid out as one channel, its power, a log), a classifier on it trained here
    on scikit-learn's digits: (model, (train x, train y), (test x, test y), float top-1 %)."""
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(0)
    x = keras.Input((64,))
    proj = keras.layers.Dense(BINS, use_bias=False, trainable=False, name="proj")
    y = keras.layers.Reshape((BINS, 1), name="bins")(proj(x))  # one channel, as audio front ends lay it out
    power = keras.layers.Multiply(name="power")([y, y])
    frontend = keras.Model(x, keras.ops.log(power + 1e-6), name="frontend")
    decay = 10.0 ** (-5.0 * np.arange(BINS) / BINS)
    proj.set_weights([(np.random.default_rng(0).standard_normal((64, BINS)) / 8 * decay).astype(np.float32)])
    pixels = keras.Input((64,), name="pixels")
    h = keras.layers.Rescaling(1 / 8, name="scale")(keras.layers.Flatten(name="flat")(frontend(pixels)))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    model = keras.Model(pixels, keras.layers.Dense(10, name="logits")(h), name="spectrum")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    digits = load_digits()
    xtr, xte, ytr, yte = train_test_split(digits.data.astype(np.float32), digits.target, test_size=0.25,
                                          random_state=0)
    model.fit(xtr, ytr, epochs=30, batch_size=64, verbose=0)
    acc = float((np.asarray(model.predict(xte, verbose=0)).argmax(1) == yte).mean() * 100)
    return model, (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64)), acc


def test_a_wide_range_inside_a_nested_keras_model_keeps_the_nested_model_float(tmp_path):
    """The power spectrum inside a nested model is found (it was not: the probe failed on the nested
    model), and the nested model, the layer the Keras routes can keep, is kept float; its line says the
    whole nested model stays float for it."""
    from edgeship.sources import load_model

    model, train, _, acc = _keras_nested_spectrum()
    assert acc > 60, acc  # 65% held out (the torch twin: 86%); chance is 10%
    path = tmp_path / "spectrum.keras"
    model.save(path)
    finding = ranges.find(load_model(str(path)), [train[0]])
    assert finding.skipped is None, finding.record()
    assert "frontend/power" in {a.name for a in finding.flagged}, finding.record()
    assert finding.layers == ("frontend",), finding.record()
    assert all(a.keep == ("frontend",) and a.name.startswith("frontend/") for a in finding.flagged)
    assert "frontend/power" in finding.line() and "nested model" in finding.line(), finding.line()


def test_the_nested_keras_front_end_kept_float_saves_the_int8_tflite(tmp_path):
    """Exported to int8 .tflite with and without: the Keras route finds the nested model's ops by its
    name and keeps them float (seen: cosine 0.45 and 15% top-1 off, 0.9996 and 66% kept)."""
    import edgeship

    model, train, test, _ = _keras_nested_spectrum()
    arts = {}
    for mode in ("off", "auto"):
        try:
            bundle = edgeship.export(model, to="tflite", quant="int8", calib=train[0][:200],
                                     eval=(test[0][:100], test[1][:100]), out=tmp_path / mode, force=True,
                                     golden_samples=100, keep_float_ranges=mode)
            arts[mode] = bundle.manifest["artifacts"][0]
        except CheckFailed as e:  # below its floor: export's verdict, the bundle written
            arts[mode] = e.result.manifest["artifacts"][0]
    off, on = arts["off"], arts["auto"]
    assert off["smoke"]["status"] == "below_floor" and off["smoke"]["cosine"] < 0.9, off["smoke"]
    assert on["float_ranges"]["kept_float"] == ["frontend"] and "kept float: frontend" in on["route"], on
    assert not [w for w in on.get("warnings", []) if "could not keep" in w], on["warnings"]
    assert on["smoke"]["status"] == "pass" and on["smoke"]["cosine"] >= 0.98, on["smoke"]
    assert on["smoke"]["accuracy"]["accuracy"] > off["smoke"]["accuracy"]["accuracy"] + 20
