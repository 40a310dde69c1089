"""--reference-device auto|cpu|cuda: where the float reference that makes the golden outputs runs,
recorded in manifest.json; clear errors where the device cannot be had."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from bench_modules import bench_module
from click.testing import CliRunner

from edgeship import reference
from edgeship.cli import cli
from edgeship.errors import UnsupportedError

cuda_missing = bench_module("cuda_setup").cuda_missing

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="session")  # session scope: decided before the session's trained models are built
def gpu():
    """The CUDA tests run when torch is a CUDA build and sees a GPU; otherwise they skip, naming the
    missing part (the GPU, or the CUDA build). EDGESHIP_REQUIRE_CUDA=1 (a GPU runner) makes a skip a failure."""
    why = cuda_missing()
    if why and os.environ.get("EDGESHIP_REQUIRE_CUDA") == "1":
        pytest.fail(f"EDGESHIP_REQUIRE_CUDA=1 but {why}", pytrace=False)
    if why:
        pytest.skip(why)


def test_the_cuda_skip_names_what_is_missing(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    why = cuda_missing()
    assert "CPU-only build" in why and "torch.version.cuda is None" in why and "constraints-cuda.txt" in why, why
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    why = cuda_missing()
    assert "no CUDA GPU is visible" in why and "CUDA 13.0 build" in why and "CPU-only" not in why, why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_missing() is None


def test_the_cuda_constraints_pin_the_cuda_build_of_the_same_torch():
    """constraints-cuda.txt: the torch version of constraints.txt with a CUDA local label, which
    constraints.txt's pin admits; nothing else changes. The README's GPU set-up uses it."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    def pins(name):
        lines = (REPO / name).read_text().splitlines()
        reqs = [Requirement(ln.split("#")[0]) for ln in lines if ln.split("#")[0].strip()]
        return {r.name: r for r in reqs}

    cpu, gpu = pins("constraints.txt"), pins("constraints-cuda.txt")
    assert set(gpu) == {"torch"}
    (spec,) = gpu["torch"].specifier
    cuda_build = Version(spec.version)
    assert spec.operator == "==" and cuda_build.local.startswith("cu"), spec
    assert cpu["torch"].specifier.contains(cuda_build)  # the same torch, 2.13.0 admits 2.13.0+cuXYZ
    (cpu_spec,) = cpu["torch"].specifier
    assert Version(cpu_spec.version).public == cuda_build.public
    readme = (REPO / "README.md").read_text()
    index = f"https://download.pytorch.org/whl/{cuda_build.local}"
    assert "-c constraints-cuda.txt" in readme and index in readme
    assert index in (REPO / "constraints-cuda.txt").read_text()


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


def test_cuda_reference_matches_the_cpu(gpu, torch_digits, torch_digits_pt2):
    for trained in (torch_digits, torch_digits_pt2):
        ds = trained.test.take(300)
        on_gpu, record = reference.run(trained.model, ds, "cuda")
        on_cpu, _ = reference.run(trained.model, ds, "cpu")
        assert record["device"] == "cuda" and record["name"]
        assert np.abs(on_gpu[0] - on_cpu[0]).max() < 1e-4
    assert reference.resolve("auto", torch_digits.model) == "cuda"


def test_cuda_keras_reference_through_the_torch_backend(gpu, keras_digits):
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
