"""--cle defaults to auto, and auto's first stage is cheap: int8 simulated in torch without and with
CLE (quantize/simulate.py) decides whether the real trial (quantize/rewrites.py: the artifact without
and with CLE, two conversions) runs at all. On a net built to need CLE (tests/planted/ranges_torch.py: channel ranges 100x apart before a
depthwise conv) the simulation gains far above the gate, the real trial runs and keeps CLE; on a
trained digits CNN (balanced ranges, in torch and in Keras) and an MLP (no conv pair) it records the
skip and never converts twice; the fp32 artifact is never touched."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.data import load_data
from edgeship.pipeline import ExportRequest
from edgeship.quantize import rewrites as rewrites_mod
from edgeship.quantize.equalize import GATE_DB, Plan
from edgeship.sources import load_model

from conftest import REPO

RANGES = f"{REPO / 'tests' / 'planted' / 'ranges_torch.py'}:build"
MLP = f"{REPO / 'tests' / 'planted' / 'mlp_torch.py'}:build"


def _export(source, out, *extra):
    r = CliRunner().invoke(cli, ["export", source, "--to", "onnx", "--quant", "fp32,int8", "--calib", "digits:train",
                                 "--eval", "digits:test", "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    arts = {a["recipe"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    return arts, r.output


@pytest.fixture
def trials(monkeypatch):
    """The artifacts auto's real trials converted and measured (a trial is two: without and with)."""
    calls = []
    real = rewrites_mod.Sequence._trial

    def counted(self, convert, model, recipe, calib, path, options):
        calls.append(path.suffix.lstrip("."))  # the target
        return real(self, convert, model, recipe, calib, path, options)

    monkeypatch.setattr(rewrites_mod.Sequence, "_trial", counted)
    return calls


def test_the_default_is_auto():
    assert ExportRequest(source="m.py:build", out=REPO / "unused").cle == "auto"
    import click

    option = next(p for p in cli.get_command(click.Context(cli), "export").params if p.name == "cle")
    assert option.default == "auto"


def test_default_export_applies_cle_where_it_helps(tmp_path, trials):
    arts, output = _export(RANGES, tmp_path / "b", "--bias-correction", "off")
    rec = arts["int8"]["cle"]
    assert rec["mode"] == "auto" and rec["pairs"] == 2 and rec["trial"] is True
    sim = rec["simulated"]
    assert sim["gain_db"] >= GATE_DB and sim["snr_db_with"] > sim["snr_db_without"]  # measured: 25.4 -> 46.8 dB
    assert rec["applied"] and rec["snr_db_with"] > rec["snr_db_without"] + 5  # measured: onnx 26 -> 37 dB
    assert trials == ["onnx", "onnx"]  # one trial: without and with
    assert arts["int8"]["conversions"] == 2  # the kept trial artifact is the artifact: no third conversion
    assert "simulated int8 SNR" in output and "weakest-output SNR" in output
    assert "cle" not in arts["fp32"]


def test_fp32_artifact_unchanged_by_auto(tmp_path):
    auto, _ = _export(RANGES, tmp_path / "auto", "--bias-correction", "off")
    off, _ = _export(RANGES, tmp_path / "off", "--bias-correction", "off", "--cle", "off")
    assert auto["fp32"]["sha256"] == off["fp32"]["sha256"]
    assert "cle" in auto["int8"] and "cle" not in off["int8"]


@pytest.mark.parametrize("source,pairs", [("digits", 1), ("mlp", 0)])
def test_default_export_skips_where_cle_cannot_help(tmp_path, trials, torch_digits, source, pairs):
    arts, output = _export(torch_digits.source if source == "digits" else MLP, tmp_path / "b",
                           "--bias-correction", "off")
    rec = arts["int8"]["cle"]
    assert rec["mode"] == "auto" and rec["pairs"] == pairs and rec["applied"] is False and rec["skipped"]
    assert trials == [] and arts["int8"]["conversions"] == 1  # no extra conversions
    assert "snr_db_with" not in rec  # nothing real was measured
    if pairs:  # balanced ranges: the simulation ran and gained under the gate (measured: -0.02 dB)
        assert rec["trial"] is False and rec["simulated"]["gain_db"] < GATE_DB
        assert "no real trial" in output
    else:
        assert "simulated" not in rec and "no conv" in rec["skipped"]


def test_keras_default_export_simulates_cle_and_skips_where_it_cannot_help(tmp_path, keras_digits, trials):
    """A Keras source gets CLE auto too (quantize/keras_equalize.py): the trained digits CNN's conv pair
    is simulated in Keras, gains under the gate (balanced ranges), and costs no conversion."""
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", keras_digits.source, "--to", "tflite", "--quant", "int8", "--calib",
                                 "digits:train", "--bias-correction", "off", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (art,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    rec = art["cle"]
    assert rec["mode"] == "auto" and rec["pairs"] >= 1 and rec["applied"] is False, rec
    assert rec["trial"] is False and rec["simulated"]["gain_db"] < GATE_DB, rec
    assert trials == [] and art["conversions"] == 1


def test_auto_skips_a_module_fx_cannot_trace(tmp_path):
    src = tmp_path / "branchy.py"
    src.write_text("import torch\n"
                   "class Net(torch.nn.Module):\n"
                   "    def __init__(self):\n"
                   "        super().__init__()\n"
                   "        self.a = torch.nn.Conv2d(1, 4, 3)\n"
                   "        self.b = torch.nn.Conv2d(4, 4, 1)\n"
                   "    def forward(self, x):\n"
                   "        y = self.b(torch.relu(self.a(x)))\n"
                   "        return y if float(y.sum()) > 0 else -y\n"  # data-dependent: fx cannot trace it
                   "def build():\n"
                   "    return Net().eval(), (torch.zeros(1, 1, 8, 8),)\n")
    model = load_model(f"{src}:build")
    x = load_data("digits:test", model.io).take(8).arrays
    plan = Plan("auto", model, x, model.run(x), log=lambda *_: None)
    assert plan.skipped and "torch.fx" in plan.skipped
