"""--reference-device auto|cpu|cuda: where the float reference that makes the golden outputs runs,
recorded in manifest.json; clear errors where the device cannot be had."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship import reference
from edgeship.cli import cli
from edgeship.errors import UnsupportedError


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_cpu_reference_is_the_models_own_run_batched(torch_digits):
    ds = torch_digits.test.take(300)
    outputs, record = reference.run(torch_digits.model, ds, "cpu", batch=128)
    assert np.array_equal(outputs[0], torch_digits.model.run(ds.batch(0, 300))[0].astype(np.float32))
    assert record["device"] == "cpu" and record["batch"] == 128 and record["samples"] == 300
    assert record["seconds"] > 0
    assert reference.resolve("cpu", torch_digits.model) == "cpu"


@pytest.mark.skipif("cuda()", reason="checks the machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(torch_digits_pt2, tmp_path):
    with pytest.raises(UnsupportedError) as e:
        reference.resolve("cuda", torch_digits_pt2.model)
    assert "no CUDA device is available" in e.value.message and "--reference-device auto" in e.value.hint
    out = tmp_path / "b"
    r = run_cli("export", torch_digits_pt2.source, "--to", "onnx", "--quant", "fp32", "--reference-device", "cuda",
                "--out", out)
    assert r.exit_code == 2 and "no CUDA device is available" in r.stderr
    assert "Traceback" not in r.stderr + r.output and not out.exists()


@pytest.mark.skipif("cuda()", reason="checks the machine without a GPU")
def test_auto_without_a_gpu_uses_the_cpu(torch_digits_pt2):
    assert reference.resolve("auto", torch_digits_pt2.model) == "cpu"


@pytest.mark.skipif("cuda()", reason="checks the machine without a GPU")
def test_keras_without_a_gpu(keras_digits):
    assert reference.resolve("auto", keras_digits.model) == "cpu"
    with pytest.raises(UnsupportedError, match="no CUDA device is available"):
        reference.resolve("cuda", keras_digits.model)


def test_keras_torch_backend_child_matches_tensorflow(keras_digits):
    """The child that runs Keras references on CUDA, run here on the CPU: same outputs as TF."""
    from edgeship import reference_keras

    ds = keras_digits.test.take(300)
    outputs, result = reference_keras.run(keras_digits.model, ds, 128, "cpu")
    assert result["device"] == "cpu" and result["backend"].startswith("keras ") and result["seconds"] > 0
    assert np.abs(outputs[0] - keras_digits.model.run(ds.batch(0, 300))[0]).max() < 1e-4


def test_savedmodel_reference_is_cpu_only(keras_digits, tmp_path):
    from edgeship.sources import load_model

    keras_digits.model.obj.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    with pytest.raises(UnsupportedError) as e:
        reference.resolve("cuda", load_model(str(tmp_path / "sm")))
    assert "SavedModel" in e.value.message and "TensorFlow on the CPU" in e.value.message


def test_unknown_device_is_refused_by_the_cli(torch_digits_pt2, tmp_path):
    r = run_cli("export", torch_digits_pt2.source, "--reference-device", "gpu", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "'gpu' is not one of 'auto', 'cpu', 'cuda'" in r.output + r.stderr


@pytest.mark.skipif("not cuda()", reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
def test_cuda_reference_matches_the_cpu(torch_digits, torch_digits_pt2):
    for trained in (torch_digits, torch_digits_pt2):
        ds = trained.test.take(300)
        on_gpu, record = reference.run(trained.model, ds, "cuda")
        on_cpu, _ = reference.run(trained.model, ds, "cpu")
        assert record["device"] == "cuda" and record["name"]
        assert np.abs(on_gpu[0] - on_cpu[0]).max() < 1e-4
    assert reference.resolve("auto", torch_digits.model) == "cuda"


@pytest.mark.skipif("not cuda()", reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
def test_cuda_keras_reference_through_the_torch_backend(keras_digits):
    ds = keras_digits.test.take(300)
    on_gpu, record = reference.run(keras_digits.model, ds, "cuda")
    assert record["device"] == "cuda" and "torch" in record["via"]
    assert np.abs(on_gpu[0] - keras_digits.model.run(ds.batch(0, 300))[0]).max() < 1e-4


def test_project_file_takes_the_reference_device_and_onnx_targets(tmp_path):
    from edgeship.config import load_config
    from edgeship.errors import InputError

    text = """
targets = [{ format = "onnx", recipe = "int8" }]
[model]
source = "net.py:build"
reference_device = "%s"
[data]
calib = "digits:train"
"""
    path = tmp_path / "edgeship.toml"
    path.write_text(text % "auto")
    p = load_config(path).project
    assert p.model.reference_device == "auto" and p.targets[0].format == "onnx"
    path.write_text(text % "gpu")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert "model.reference_device" in e.value.message
