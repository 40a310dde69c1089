"""--calibration: each method through each route's own quantizer, on the digits CNNs (real data:
calibrated on digits:train, measured on digits:test), and auto's choice recorded in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.convert import ConvertOptions
from edgeship.errors import UnsupportedError
from edgeship.quantize import get_recipe
from edgeship.quantize.calibration import (
    entropy_range,
    percentile_range,
    route_methods,
    run_artifact,
    samples_of,
    score,
)


def test_percentile_and_entropy_clip_an_outlier():
    """Values of real activations (ReLU'd digits pixels x 10) plus one far outlier: min-max would
    spend the range on the outlier; percentile and entropy both clip it."""
    from sklearn.datasets import load_digits

    x = np.maximum(load_digits().data.ravel() * 10.0 - 20.0, 0.0)
    x = np.append(x, 5000.0)
    hist, _ = np.histogram(x, bins=2048, range=(0.0, x.max()))
    for lo, hi in (percentile_range(hist, 0.0, float(x.max())), entropy_range(hist, 0.0, float(x.max()))):
        assert lo == 0.0
        assert 100.0 <= hi < 1000.0, hi  # covers the pixels (max 140), not the outlier


def test_entropy_is_not_pulled_in_by_a_relus_exact_zeros():
    """A ReLU'd Gaussian: half the values are exactly 0, all in the bin holding 0. Left in, that
    spike dominates the KL divergence and the range shrank to 1.77 sigma, clipping 8% of the
    positive values; levelled (TensorRT's calibrator does the same) the range keeps the tail."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(200_000), 0.0)
    hist, _ = np.histogram(x, bins=2048, range=(0.0, x.max()))
    lo, hi = entropy_range(hist, 0.0, float(x.max()))
    assert lo == 0.0 and hi >= np.percentile(x[x > 0], 99.9), hi
    hist_before = hist.copy()
    entropy_range(hist, 0.0, float(x.max()))
    assert (hist == hist_before).all()  # the caller's histogram (the observer's own) is not changed


def test_percentile_keeps_zero_inside_for_signed_values():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_000)
    hist, _ = np.histogram(x, bins=2048, range=(x.min(), x.max()))
    lo, hi = percentile_range(hist, float(x.min()), float(x.max()))
    assert x.min() < lo < -3.0 and 3.0 < hi < x.max()


@pytest.fixture(scope="module")
def measured(torch_digits):
    return torch_digits.test.take(100)


def _score(model, path, target, ds):
    return score(model.run(ds.arrays), run_artifact(path, target, samples_of(ds.arrays)))


@pytest.mark.parametrize("target", ["pte", "tflite", "onnx"])
def test_each_method_on_each_torch_route(torch_digits, measured, tmp_path, target):
    from edgeship.convert import get_route

    convert = get_route("torch", target).load()
    calib = torch_digits.train.take(200)
    scores, blobs = {}, {}
    for method in route_methods("torch", target):
        path = tmp_path / f"{method}.{target}"
        result = convert(torch_digits.model, get_recipe("int8"), calib, path, ConvertOptions(calibration=method))
        scores[method] = _score(torch_digits.model, path, target, measured)
        blobs[method] = path.read_bytes()
        if target == "pte":
            assert f"{method} ranges" in result.route
    for method, s in scores.items():
        assert s["snr_db"] > 20.0, (method, s)  # every method gives a working int8 artifact (entropy: 21 dB on pte)
    # each method changes the ranges. On .onnx, entropy gave MinMax's exact bytes while quantize_static
    # built onnxruntime's Entropy calibrator itself, with 128 bins (a single KL window, the whole range);
    # convert/onnx_common.py now runs that calibrator with quantize/calibration.py's ORT_ENTROPY
    for method in (m for m in blobs if m != "minmax"):
        assert blobs[method] != blobs["minmax"], method


def test_keras_tflite_is_minmax_only(keras_digits, tmp_path):
    from edgeship.convert.keras_tflite import convert

    calib = keras_digits.train.take(100)
    convert(keras_digits.model, get_recipe("int8"), calib, tmp_path / "mm.tflite", ConvertOptions(calibration="minmax"))
    assert _score(keras_digits.model, tmp_path / "mm.tflite", "tflite", keras_digits.test.take(50))["snr_db"] > 30
    with pytest.raises(UnsupportedError, match="min-max only"):
        convert(keras_digits.model, get_recipe("int8"), calib, tmp_path / "p.tflite",
                ConvertOptions(calibration="percentile"))


def test_keras_pte_takes_the_method_into_its_child(keras_digits, tmp_path):
    from edgeship.convert.keras_pte import convert

    result = convert(keras_digits.model, get_recipe("int8"), keras_digits.train.take(100), tmp_path / "k.pte",
                     ConvertOptions(calibration="entropy"))
    assert "entropy ranges" in result.route
    # entropy ranges on the digits CNN: 21.2 dB measured here (Keras -> .pte, after the Keras graph passes) and
    # 21 dB on the torch .pte; the floor is the torch test's, 20 dB (minmax/mse reach 35-40 dB)
    assert _score(keras_digits.model, tmp_path / "k.pte", "pte", keras_digits.test.take(50))["snr_db"] > 20


def test_onnx_refuses_mse():
    from edgeship.quantize.calibration import check_method

    with pytest.raises(UnsupportedError, match="no MSE search"):
        check_method("mse", "torch", "onnx")


def test_auto_without_eval_splits_calib_and_records_the_choice(torch_digits, tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", torch_digits.source, "--to", "onnx", "--quant", "int8",
                                 "--calib", "digits:train", "--calib-samples", "120", "--calibration", "auto",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "is split" in r.output and "held out" in r.output.replace("\n", " ")
    rec = json.loads((out / "manifest.json").read_text())["artifacts"][0]["calibration"]
    assert rec["requested"] == "auto" and "held out" in rec["measured_on"]
    assert [c["method"] for c in rec["candidates"]] == ["minmax", "percentile", "entropy"]
    kept = [c for c in rec["candidates"] if c["kept"]]
    assert len(kept) == 1 and kept[0]["method"] == rec["method"]
    assert kept[0]["snr_db"] == max(c["snr_db"] for c in rec["candidates"]) == rec["score"]["snr_db"]


def test_a_method_the_route_lacks_is_one_line_exit_2(torch_digits, tmp_path):
    r = CliRunner().invoke(cli, ["export", torch_digits.source, "--to", "onnx", "--quant", "int8", "--calib",
                                 "digits:train", "--calibration", "mse", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "not available on torch -> onnx" in r.output
    assert not (tmp_path / "b").exists()
