"""int16x8 (int16 activations, int8 weights): round trips on the digits CNNs where the format has
it (.tflite from Keras through the converter's 16x8 ops set, .tflite from PyTorch through
ai-edge-quantizer on the float .tflite with the calibration set's ranges, .onnx through QInt16
activations), and a one-line refusal with the reason where it does not (.pte)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.convert import ConvertOptions
from edgeship.quantize import get_recipe
from edgeship.quantize.calibration import run_artifact, samples_of, score


def _both(model, convert, calib, test, tmp_path, suffix):
    out = {}
    for recipe in ("int8", "int16x8"):
        path = tmp_path / f"{recipe}.{suffix}"
        convert(model, get_recipe(recipe), calib, path, ConvertOptions())
        out[recipe] = score(model.run(test.arrays), run_artifact(path, suffix, samples_of(test.arrays)))
    return out, tmp_path / f"int16x8.{suffix}"


def test_keras_tflite_16x8_ops_set(keras_digits, tmp_path):
    from edgeship.convert.keras_tflite import convert
    from edgeship.runtime.standalone.tflite import inspect_artifact

    scores, path = _both(keras_digits.model, convert, keras_digits.train.take(200), keras_digits.test.take(100),
                         tmp_path, "tflite")
    dtypes = {t["dtype"] for t in inspect_artifact(str(path))["tensors"]}
    assert "int16" in dtypes and "int8" in dtypes  # int16 activations, int8 weights
    assert scores["int16x8"]["snr_db"] > scores["int8"]["snr_db"] + 2, scores
    assert scores["int16x8"]["cosine"] > 0.999


def test_torch_tflite_16x8_on_the_float_tflite(torch_digits, tmp_path):
    # ai-edge-quantizer's own calibrator (a moving average of each sample's range) clipped the logits:
    # 16.3 dB, no better than its int8; with the set's own ranges int16x8 clears PT2E int8
    from edgeship.convert.torch_tflite import convert
    from edgeship.runtime.standalone.tflite import inspect_artifact

    scores, path = _both(torch_digits.model, convert, torch_digits.train.take(200), torch_digits.test.take(100),
                         tmp_path, "tflite")
    details = inspect_artifact(str(path))
    dtypes = {t["dtype"] for t in details["tensors"]}
    assert "int16" in dtypes and "int8" in dtypes  # int16 activations, int8 weights
    assert {t["dtype"] for t in details["inputs"] + details["outputs"]} == {"float32"}  # float I/O
    assert scores["int16x8"]["snr_db"] > max(40.0, scores["int8"]["snr_db"]), scores
    assert scores["int16x8"]["cosine"] > 0.9999


def test_torch_onnx_qint16_activations(torch_digits, tmp_path):
    import onnx

    from edgeship.convert.torch_onnx import convert

    scores, path = _both(torch_digits.model, convert, torch_digits.train.take(200), torch_digits.test.take(100),
                         tmp_path, "onnx")
    proto = onnx.load(str(path))
    q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    inits = {i.name: i for i in proto.graph.initializer}
    zp_types = {inits[n.input[2]].data_type for n in q if len(n.input) > 2 and n.input[2] in inits}
    assert onnx.TensorProto.INT16 in zp_types
    assert scores["int16x8"]["snr_db"] > scores["int8"]["snr_db"], scores


def test_int16x8_through_export_and_validate(torch_digits, tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", torch_digits.source, "--to", "onnx", "--quant", "int16x8",
                                 "--calib", "digits:train", "--eval", "digits:test", "--out", str(out)])
    assert r.exit_code == 0, r.output
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    assert art["recipe"] == "int16x8" and "int16 activations" in art["route"]
    r = CliRunner().invoke(cli, ["validate", str(out), "--runs", "3", "--warmup", "1", "--json", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    v = json.loads((tmp_path / "v.json").read_text())["artifacts"][0]
    assert v["status"] == "pass" and v["accuracy"]["cosine"] > 0.999


@pytest.mark.parametrize("target,reason", [("pte", "XNNPACK has no int16 activations")])
def test_refused_with_the_reason(torch_digits, tmp_path, target, reason):
    r = CliRunner().invoke(cli, ["export", torch_digits.source, "--to", target, "--quant", "int16x8",
                                 "--calib", "digits:train", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2
    assert reason in r.output.replace("\n", " ")
    assert not (tmp_path / "b").exists()
