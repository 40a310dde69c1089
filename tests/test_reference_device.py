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


def test_keras_reference_stays_on_the_cpu(keras_digits, tmp_path):
    assert reference.resolve("auto", keras_digits.model) == "cpu"
    with pytest.raises(UnsupportedError) as e:
        reference.resolve("cuda", keras_digits.model)
    assert "runs PyTorch models only" in e.value.message and "TensorFlow on the CPU" in e.value.message


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
