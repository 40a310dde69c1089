"""Stage-bisected parity (edgeship/stages.py, `edgeship diff --stages`): the same digits inputs through
eager, torch.export, the simulated int8 graph, the artifact here and on a device; a divergence planted at
each stage is found at that stage, and named where it can be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.convert import ConvertOptions, get_route
from edgeship.data import load_data
from edgeship.quantize import get_recipe
from edgeship.runtime.local import LocalDevice
from edgeship.sources import load_model
from edgeship.stages import bisect

from conftest import REPO

PLANTED = REPO / "tests" / "planted"
STAGES = f"{PLANTED / 'stages_torch.py'}"
SAMPLES = 12


def _feeds(model, n=SAMPLES):
    arrays = load_data("digits:test", model.io).take(n).arrays
    return [[np.ascontiguousarray(a[i : i + 1]) for a in arrays] for i in range(n)]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The digits MLP and its fp32 .onnx (converted from it), and one converted from its perturbed twin."""
    tmp = tmp_path_factory.mktemp("stages")
    model = load_model(f"{STAGES}:build")
    convert = get_route("torch", "onnx").load()
    good, bad = tmp / "mlp.fp32.onnx", tmp / "perturbed.fp32.onnx"
    convert(model, get_recipe("fp32"), None, good, ConvertOptions())
    convert(load_model(f"{STAGES}:perturbed"), get_recipe("fp32"), None, bad, ConvertOptions())
    return model, good, bad


def _by_name(result):
    return {s.name: s for s in result.stages}


def test_every_stage_within_its_floor(mlp):
    model, good, _ = mlp
    result = bisect(model, good, "fp32", _feeds(model), device=LocalDevice(), log=lambda *_: None)
    stages = _by_name(result)
    assert result.first_failing is None, result
    assert [s.name for s in result.stages] == ["eager", "exported", "quantized", "artifact", "device"]
    assert stages["exported"].passed and stages["exported"].vs_float["cosine"] > 0.9999
    assert stages["quantized"].ran is False and "fp32" in stages["quantized"].skipped
    assert stages["artifact"].passed and stages["artifact"].vs_previous["stage"] == "exported"
    assert stages["device"].passed and stages["device"].vs_previous["cosine"] > 0.9999


def test_a_divergence_only_under_export_is_found_at_exported(mlp, tmp_path):
    model = load_model(f"{STAGES}:export_only")
    art = tmp_path / "export_only.fp32.onnx"
    get_route("torch", "onnx").load()(model, get_recipe("fp32"), None, art, ConvertOptions())
    result = bisect(model, art, "fp32", _feeds(model), log=lambda *_: None)
    assert result.first_failing == "exported" and "torch.export" in result.node, result
    assert _by_name(result)["device"].skipped == "no --device given"


def test_a_stage_that_cannot_run_fails_in_its_own_words(mlp):
    """torch.export refuses a data-dependent branch: the exported stage fails, said, and later stages
    still run against eager (the MLP's own artifact matches it)."""
    _, good, _ = mlp
    model = load_model(f"{STAGES}:data_dependent")
    result = bisect(model, good, "fp32", _feeds(model), log=lambda *_: None)
    stages = _by_name(result)
    assert result.first_failing == "exported" and stages["exported"].ran is False, result
    assert stages["exported"].skipped.startswith("could not run: torch.export"), stages["exported"].skipped
    assert stages["artifact"].passed and stages["artifact"].vs_previous["stage"] == "eager"


def test_a_wrong_conversion_is_found_at_artifact(mlp):
    model, _, bad = mlp
    result = bisect(model, bad, "fp32", _feeds(model), log=lambda *_: None)
    stages = _by_name(result)
    assert stages["exported"].passed and result.first_failing == "artifact", result


def test_an_int8_loss_is_found_at_quantized_and_the_layer_named(tmp_path):
    """The planted fragile CNN: one channel 1000x (project scales it back) ruins per-tensor int8."""
    model = load_model(f"{PLANTED / 'fragile_torch.py'}:build")
    calib = load_data("digits:train", model.io).take(64)
    art = tmp_path / "fragile.int8.onnx"
    get_route("torch", "onnx").load()(model, get_recipe("int8"), calib, art, ConvertOptions())
    result = bisect(model, art, "int8", _feeds(model), calib, log=lambda *_: None)
    assert result.first_failing == "quantized", result
    assert "fragile" in result.node, result.node  # the layer that loses most in the simulated graph


class WrongDevice:
    """A STAND-IN for a device whose runtime computes wrong results (QEMU with -cpu max did, for int8):
    no real device here is wrong on purpose, so the host's runner's outputs are offset by 1."""

    uri = "stand-in:wrong"

    def run_artifact(self, artifact, inputs, signature, **kw):
        run = LocalDevice().run_artifact(artifact, inputs, signature, **kw)
        run.outputs = [o + 1.0 for o in run.outputs]
        return run


def test_a_wrong_device_is_found_at_device(mlp):
    model, good, _ = mlp
    result = bisect(model, good, "fp32", _feeds(model), device=WrongDevice(), log=lambda *_: None)
    assert result.first_failing == "device" and "device's runtime" in result.node, result


def test_cli_exit_1_names_the_stage_and_usage_errors_exit_2(mlp, tmp_path):
    _, _, bad = mlp
    r = CliRunner().invoke(cli, ["diff", "--stages", f"{STAGES}:build", str(bad), "--data", "digits:test",
                                 "--samples", "8", "--json", str(tmp_path / "stages.json")])
    assert r.exit_code == 1, r.output
    assert "stage 'artifact'" in r.output and (tmp_path / "stages.json").exists()
    r = CliRunner().invoke(cli, ["diff", f"{STAGES}:build", str(bad)])
    assert r.exit_code == 2 and "--stages" in r.output
    r = CliRunner().invoke(cli, ["diff", str(bad), "--device", "local"])
    assert r.exit_code == 2 and "add --stages" in r.output
    r = CliRunner().invoke(cli, ["diff", "--stages", str(Path(bad).with_name("missing.fp32.onnx"))])
    assert r.exit_code == 2 and "not found" in r.output
