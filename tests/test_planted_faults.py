"""The planted-fault corpus: mistakes users make, planted on purpose, and what edgeship must say.

  int8 calibrated on the wrong data     validate fails the int8 artifact's cosine check (fp32 passes)
  wrong normalization at deployment     validate fails the int8 artifact's accuracy (fp32 passes)
  swapped channel order (RGB vs BGR)    validate fails accuracy and cosine, fp32 included
  one fragile layer (activation outlier) accuracy-aware int8 keeps just that layer in float and
                                        meets the budget, on .pte and .tflite from torch and from
                                        Keras; `diff` names it worst

Real models trained on scikit-learn's digits, real converters and runtimes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli
from edgeship.data import load_data
from edgeship.hashing import sha256_file
from edgeship.pipeline import ExportFailed, ExportRequest, export
from edgeship.sources import load_model
from edgeship.validation import ValidateRequest, validate

pytestmark = pytest.mark.slow

PLANTED = Path(__file__).resolve().parent / "planted"
FRAGILE_TORCH = f"{PLANTED / 'fragile_torch.py'}:build"


def _export(out: Path, source: str, misses: str | None = None, **kw) -> dict:
    """Export; MISSES names the recipe whose artifact must miss its floor at export already (exit 1,
    ExportFailed, the bundle still written with the artifact marked below_floor)."""
    kw.setdefault("calib_samples", 100)
    if misses is None:
        return export(ExportRequest(source=source, out=out, force=True, **kw)).manifest
    with pytest.raises(ExportFailed) as e:
        export(ExportRequest(source=source, out=out, force=True, **kw))
    manifest = e.value.result.manifest
    low = {a["recipe"] for a in manifest["artifacts"] if a["smoke"]["status"] == "below_floor"}
    assert low == {misses} and f".{misses}." in e.value.message, (low, e.value.message)
    return manifest


def _failed(bundle: Path) -> dict[str, set[str]]:
    """{recipe: names of the checks that failed} after validating every artifact of the bundle."""
    results, _ = validate(ValidateRequest(bundle, warmup=1, runs=3))
    assert all(r["status"] != "error" for r in results), [r.get("error") for r in results]
    return {r["recipe"]: {c["name"] for c in r["checks"] if not c["passed"]} for r in results}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """Wrongly prepared data sets, as .npz files the data loader reads."""
    from edgeship.demo_models import digits_split

    folder = tmp_path_factory.mktemp("faulty-data")
    xtr, _, xte, yte = digits_split()
    rng = np.random.default_rng(0)
    # Calibration images from the wrong source: faint noise, nothing like a digit (range 0..0.1).
    np.savez(folder / "noise.npz", image=(rng.random((200, 8, 8, 1)) * 0.1).astype(np.float32))
    # Deployment data left unnormalized: sklearn's raw 0..16 pixel values instead of 0..1.
    np.savez(folder / "raw_test.npz", image=(xte * 16)[..., None].astype(np.float32), labels=yte)
    return {"noise": str(folder / "noise.npz"), "raw_test": str(folder / "raw_test.npz")}


# ---------------------------------------------------------------------------------------------
# Faults validation must flag


def test_int8_calibrated_on_wrong_data_fails_cosine(keras_digits, data, tmp_path):
    bundle = tmp_path / "b"
    _export(bundle, keras_digits.source, targets=["tflite"], recipes="fp32,int8", calib=data["noise"],
            eval="digits:test", misses="int8")  # export's own verdict already names it
    failed = _failed(bundle)
    assert "cosine" in failed["int8"]  # int8 output no longer points where the float model's does
    assert failed["fp32"] == set()  # the float artifact is fine: the fault is the calibration


def test_wrong_normalization_fails_accuracy(keras_digits, data, tmp_path):
    bundle = tmp_path / "b"
    _export(bundle, keras_digits.source, targets=["tflite"], recipes="fp32,int8", calib="digits:train",
            eval=data["raw_test"], misses="int8")  # export's own verdict already names it
    failed = _failed(bundle)
    assert "accuracy_drop" in failed["int8"]  # inputs 16x the calibrated range saturate int8
    assert failed["fp32"] == set()


def test_correct_preparation_passes(keras_digits, tmp_path):
    """The control: the same model and route, data prepared right, passes every check."""
    bundle = tmp_path / "b"
    _export(bundle, keras_digits.source, targets=["tflite"], recipes="fp32,int8", calib="digits:train",
            eval="digits:test")
    assert _failed(bundle) == {"fp32": set(), "int8": set()}


def test_swapped_channel_order_fails_accuracy_and_cosine(tmp_path):
    from planted import colour_keras

    model = colour_keras.train(tmp_path / "colour.keras")
    colour_keras.swap_channels(model, tmp_path / "colour_bgr.keras")
    train, test = colour_keras.write_data(tmp_path, "train"), colour_keras.write_data(tmp_path, "test")
    good, bgr = tmp_path / "good", tmp_path / "bgr"
    _export(good, str(tmp_path / "colour.keras"), targets=["tflite"], recipes="fp32", calib=train, eval=test)
    assert _failed(good) == {"fp32": set()}
    # The artifact a channel-order mistake produces (it reads BGR where the app feeds RGB), shipped
    # in place of the right one: same bundle, same golden vectors.
    _export(bgr, str(tmp_path / "colour_bgr.keras"), targets=["tflite"], recipes="fp32", calib=train, eval=test)
    manifest = json.loads((good / MANIFEST).read_text())
    record = manifest["artifacts"][0]
    shutil.copyfile(bgr / json.loads((bgr / MANIFEST).read_text())["artifacts"][0]["path"], good / record["path"])
    record["sha256"] = sha256_file(good / record["path"])
    (good / MANIFEST).write_text(json.dumps(manifest))
    assert _failed(good)["fp32"] == {"accuracy_drop", "cosine"}


# ---------------------------------------------------------------------------------------------
# The fragile layer: accuracy-aware int8 and diff, on both formats


@pytest.fixture(scope="module")
def fragile_keras(tmp_path_factory) -> str:
    from planted.fragile_keras import train

    path = tmp_path_factory.mktemp("fragile") / "fragile.keras"
    assert train(path) > 95
    return str(path)


def _check_search(manifest: dict) -> dict:
    aa = manifest["artifacts"][0]["accuracy_aware"]
    assert aa["drop_before"] > 20  # fully int8, the outlier wipes out the layer's other channels
    assert aa["met"] and aa["drop_after"] <= 1.0
    assert aa["kept_float"] == ["fragile"]  # one layer, the planted one, and nothing else
    assert aa["iterations"] == 2  # fully int8, then with `fragile` in float
    assert aa["ranking"][0]["name"] == "fragile"
    assert aa["size_cost_bytes"] > 0  # float weights of the kept layer
    assert set(aa) >= {"metric", "budget", "latency_cost_ms"}
    return aa


def test_accuracy_aware_pte_keeps_only_the_fragile_layer(tmp_path):
    bundle = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", FRAGILE_TORCH, "--to", "pte", "--quant", "int8", "--calib", "digits:train",
                                 "--calib-samples", "100", "--eval", "digits:test", "--max-drop", "1.0",
                                 "--cle", "off",  # CLE auto (the default) rescues the fragile layer: no search left
                                 "--out", str(bundle)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "kept float: fragile" in said and "within budget" in said
    aa = _check_search(json.loads((bundle / MANIFEST).read_text()))
    assert aa["metric"] == "top1" and aa["budget"] == 1.0
    assert _failed(bundle) == {"int8": set()}  # and validate agrees on the golden vectors


def test_accuracy_aware_tflite_keeps_only_the_fragile_layer(fragile_keras, tmp_path):
    bundle = tmp_path / "b"
    manifest = _export(bundle, fragile_keras, targets=["tflite"], recipes="int8", calib="digits:train",
                       eval="digits:test", max_drop=1.0, cle="off")  # CLE auto would rescue the fragile layer
    _check_search(manifest)
    assert _failed(bundle) == {"int8": set()}


def test_accuracy_aware_pte_from_keras_keeps_only_the_fragile_layer(fragile_keras, tmp_path):
    """Keras -> .pte: each Keras layer exported under a torch module of its name, so XNNPACK's
    PT2E quantizer can leave `fragile` out of int8."""
    bundle = tmp_path / "b"
    manifest = _export(bundle, fragile_keras, targets=["pte"], recipes="int8", calib="digits:train",
                       eval="digits:test", max_drop=1.0, cle="off")
    _check_search(manifest)
    assert "kept float: fragile" in manifest["artifacts"][0]["route"]
    assert _failed(bundle) == {"int8": set()}


def test_accuracy_aware_onnx_from_keras_keeps_only_the_fragile_layer(fragile_keras, tmp_path):
    """Keras -> .onnx (refused before): quantize_static excludes `fragile`'s nodes, found by the Keras layer
    scope tf2onnx names them with; ranked on the int8 .onnx's own QDQ tensors against its fp32 twin. Then
    diff on the plain int8 .onnx names the same layer from those tensors."""
    bundle = tmp_path / "b"
    manifest = _export(bundle, fragile_keras, targets=["onnx"], recipes="int8", calib="digits:train",
                       eval="digits:test", max_drop=1.0, cle="off", bias_correction="off")
    aa = _check_search(manifest)
    assert "QDQ" in manifest["artifacts"][0]["route"] and "kept float: fragile" in manifest["artifacts"][0]["route"]
    assert aa["ranking"][0]["added_db"] > 10
    assert _failed(bundle) == {"int8": set()}

    plain = tmp_path / "plain"
    _export(plain, fragile_keras, targets=["onnx"], recipes="fp32,int8", calib="digits:train", eval="digits:test",
            misses="int8", bias_correction="off", cle="off")
    report = _diff(plain / "fragile.int8.onnx", tmp_path)
    assert "QuantizeLinear/DequantizeLinear" in report["reference"]


def _diff(artifact: Path, tmp_path: Path) -> dict:
    png, out = tmp_path / "layers.png", tmp_path / "layers.json"
    r = CliRunner().invoke(cli, ["diff", str(artifact), "--png", str(png), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.read_text())
    assert "worst layer: fragile" in r.output
    worst, *rest = report["layers"]
    assert worst["name"] == "fragile" and worst["snr_db"] < 10 and worst["cosine"] < 0.5
    assert all(row["added_db"] < worst["added_db"] / 2 for row in rest)  # far ahead of every other layer
    assert {r["name"] for r in report["layers"]} == {"conv1", "fragile", "fc1", "fc2"}
    return report


def test_diff_names_the_fragile_layer_pte(tmp_path):
    bundle = tmp_path / "b"
    _export(bundle, FRAGILE_TORCH, targets=["pte"], recipes="int8", calib="digits:train", eval="digits:test")
    report = _diff(bundle / "fragile_torch.int8.pte", tmp_path)
    assert "simulated on the host" in report["reference"]


def test_diff_names_the_fragile_layer_tflite(fragile_keras, tmp_path):
    bundle = tmp_path / "b"
    # plain int8 (Keras bias correction, on by default, lifts the fragile layer's cosine over 0.5: 0.60 seen):
    # the outlier ruins it, export says so, diff says where
    _export(bundle, fragile_keras, targets=["tflite"], recipes="fp32,int8", calib="digits:train",
            eval="digits:test", misses="int8", bias_correction="off", cle="off")
    _diff(bundle / "fragile.int8.tflite", tmp_path)


def test_keras_cle_auto_rescues_the_fragile_layer(fragile_keras, tmp_path):
    """Cross-layer equalization of a Keras model (quantize/keras_equalize.py): the planted pair
    (expand conv -> ReLU -> project conv, one channel 1000x between them, inside a nested Sequential)
    is found with the one other pair (fc1 -> ReLU -> fc2), the float function is kept, and --cle auto's Keras simulation sees the
    gain, its real trial confirms it, and the int8 .tflite that plain int8 ruins (the test above:
    below its floor) passes its floor."""
    import keras

    from edgeship.quantize.keras_equalize import equalize, pairs

    model = keras.models.load_model(fragile_keras)
    x = load_data("digits:test", load_model(fragile_keras).io).take(64).arrays[0]
    found = pairs(model, [x[:1]])
    assert [(a.name, b.name) for a, _, b in found] == [("expand", "project"), ("fc1", "fc2")]
    eq, n = equalize(model, [x[:1]])
    ref, out = np.asarray(model(x)), np.asarray(eq(x))
    assert n == 2 and np.abs(out - ref).max() < 1e-3 * np.abs(ref).max()
    bundle = tmp_path / "b"
    manifest = _export(bundle, fragile_keras, targets=["tflite"], recipes="int8", calib="digits:train",
                       eval="digits:test", bias_correction="off")  # cle: auto, the default
    art = manifest["artifacts"][0]
    cle = art["cle"]
    assert cle["applied"] and cle["trial"] and cle["pairs"] == 2, cle
    assert cle["simulated"]["gain_db"] >= cle["simulated"]["threshold_db"], cle
    assert cle["snr_db_with"] > cle["snr_db_without"] + 10, cle
    assert art["smoke"]["status"] == "pass", art["smoke"]


def test_diff_names_the_fragile_layer_pte_from_keras(fragile_keras, tmp_path):
    bundle = tmp_path / "b"
    _export(bundle, fragile_keras, targets=["pte"], recipes="int8", calib="digits:train", eval="digits:test",
            misses="int8", cle="off")  # the outlier ruins plain int8: export says so, diff says where
    report = _diff(bundle / "fragile.int8.pte", tmp_path)
    assert {r["name"]: r["kind"] for r in report["layers"]} == {
        "conv1": "Conv2D", "fragile": "Sequential", "fc1": "Dense", "fc2": "Dense"}  # Keras' own class names
    assert "simulated on the host" in report["reference"]


def test_accuracy_aware_tflite_from_torch_keeps_only_the_fragile_layer(tmp_path):
    """torch -> .tflite: litert-torch's PT2E quantizer with `fragile` filtered out of int8."""
    bundle = tmp_path / "b"
    manifest = _export(bundle, FRAGILE_TORCH, targets=["tflite"], recipes="int8", calib="digits:train",
                       eval="digits:test", max_drop=1.0, cle="off")  # CLE auto would rescue the fragile layer
    _check_search(manifest)
    assert "kept float: fragile" in manifest["artifacts"][0]["route"]
