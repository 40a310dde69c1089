"""The Python API on models held in memory: a trained nn.Module and a trained keras.Model, each to
.tflite and .pte in fp32 and int8, validated, their records read; and `import edgeship` loads no
framework."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import edgeship
from edgeship.data import load_data
from edgeship.model import IOSpec, TensorSpec

HEAVY = ("torch", "tensorflow", "keras", "executorch", "litert_torch", "onnx", "onnxruntime", "ai_edge_litert",
         "torchao", "jax", "tf2onnx")
NAMES = ["fp32.pte", "fp32.tflite", "int8.pte", "int8.tflite"]


def test_import_edgeship_loads_no_framework():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgeship, edgeship.cli"],
                         capture_output=True, text=True, check=True).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert "edgeship" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.fixture(scope="module")
def torch_module():
    from edgeship.demo_models import train_torch_cnn

    return train_torch_cnn()[0]


def test_export_an_in_memory_torch_module(torch_module, tmp_path):
    import torch

    x = torch.zeros(1, 1, 8, 8)
    bundle = edgeship.export(torch_module, example_inputs=(x,), to=("tflite", "pte"), quant=("fp32", "int8"),
                             calib="digits:train", eval="digits:test", out=tmp_path / "b", name="cnn",
                             calib_samples=64, golden_samples=100)
    assert sorted(a["path"] for a in bundle.artifacts) == [f"cnn.{n}" for n in NAMES]
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk == bundle.manifest
    assert on_disk["model"]["source"] == f"python:{type(torch_module).__name__}"
    assert on_disk["model"]["source_path"] is None and len(on_disk["model"]["source_sha256"]) == 64

    result = bundle.validate(device="local", runs=3, warmup=1)
    assert result.ok, [(r["artifact"], r["status"], r.get("error")) for r in result.records]
    by = result.by_artifact()
    assert sorted(by) == [f"cnn.{n}" for n in NAMES]
    # the records are the CLI's: the float artifacts match the module itself
    ds = load_data("digits:test", IOSpec([TensorSpec("x", (1, 1, 8, 8))])).take(100)
    with torch.no_grad():
        expected = torch_module(torch.from_numpy(ds.arrays[0])).numpy()
    golden = np.load(tmp_path / "b" / "golden.npz")
    assert np.abs(golden["output_0"] - expected).max() < 1e-5
    for fmt in ("tflite", "pte"):
        assert by[f"cnn.fp32.{fmt}"]["accuracy"]["max_abs_error"] < 1e-4
        assert by[f"cnn.int8.{fmt}"]["accuracy"]["cosine"] > 0.98

    # the same module again: up to date, nothing exported; the data re-run uses the module in memory
    again = edgeship.export(torch_module, example_inputs=(x,), to=("tflite", "pte"), quant=("fp32", "int8"),
                            calib="digits:train", eval="digits:test", out=tmp_path / "b", name="cnn",
                            calib_samples=64, golden_samples=100)
    assert again.manifest["created_unix"] == bundle.manifest["created_unix"]
    rerun = bundle.validate(data="digits:test", runs=2, warmup=1)
    assert rerun.context["reference"] == "model re-run over digits:test" and rerun.ok


def test_export_an_in_memory_keras_model_with_array_data(tmp_path):
    from edgeship.demo_models import digits_split, train_keras_cnn

    model = train_keras_cnn()[0]
    x_train, y_train, x_test, y_test = digits_split()
    calib = x_train[:64].reshape(-1, 8, 8, 1).astype(np.float32)
    evaluation = (x_test[:80].reshape(-1, 8, 8, 1).astype(np.float32), y_test[:80])
    bundle = edgeship.export(model, to="tflite,pte", quant="fp32,int8", calib=calib, eval=evaluation,
                             out=tmp_path / "k", calib_min=16)
    assert sorted(a["path"] for a in bundle.artifacts) == [f"{model.name}.{n}" for n in NAMES]
    assert bundle.manifest["golden"]["has_labels"] and bundle.manifest["golden"]["samples"] == 80
    result = edgeship.validate(tmp_path / "k", runs=3, warmup=1)
    assert result.ok, [(r["artifact"], r["status"], r.get("error")) for r in result.records]
    expected = model.predict(evaluation[0], verbose=0)
    assert np.abs(np.load(tmp_path / "k" / "golden.npz")["output_0"] - expected).max() < 1e-5
    for r in result.records:
        assert r["accuracy"]["accuracy_drop"] <= 1.0, r
    assert bundle.artifact_path("pte", "int8").is_file()


def test_api_errors_are_the_cli_family(tmp_path, torch_module):
    with pytest.raises(edgeship.InputError, match="needs example_inputs"):
        edgeship.export(torch_module, out=tmp_path / "x")
    with pytest.raises(edgeship.InputError, match="cannot export a builtins.dict"):
        edgeship.export({}, out=tmp_path / "x")
    with pytest.raises(edgeship.InputError, match="unknown export option"):
        edgeship.export("m.keras", out=tmp_path / "x", calibraton="digits")
    with pytest.raises(edgeship.UnsupportedError, match="Did you mean 'int8'"):
        edgeship.export("m.keras", out=tmp_path / "x", quant="int9")
    err = pytest.raises(edgeship.InputError, edgeship.validate, tmp_path / "missing").value
    assert err.exit_code == 2 and "not found" in err.message
