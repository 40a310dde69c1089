"""Bias correction on a net built to need it (tests/planted/shift_torch.py: a depthwise conv whose
small weights all round to zero in int8, a one-sided loss): only biases change, int8 SNR on the
digits test images rises on .onnx, .pte and .tflite, --bias-correction auto records its choice
(the simulation's, or a real trial's where none simulates), and the fp32 artifact is the same bytes as without it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.convert import ConvertOptions, get_route
from edgeship.data import load_data
from edgeship.quantize import get_recipe
from edgeship.quantize.bias_correction import correct, weight_qmax
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.sources import load_model

from conftest import REPO

PLANTED = f"{REPO / 'tests' / 'planted' / 'shift_torch.py'}:build"


@pytest.fixture(scope="module")
def planted():
    model = load_model(PLANTED)
    return model, load_data("digits:train", model.io).take(200), load_data("digits:test", model.io).take(100)


def test_only_biases_change(planted):
    model, calib, test = planted
    fixed, record = correct(model.obj, calib.arrays)
    assert record["layers"] == 3 and record["max_abs_shift"] > 0
    before, after = model.obj.state_dict(), fixed.state_dict()
    for name in ("conv1.weight", "dw.weight", "pw.weight"):
        assert torch.equal(before[name], after[name])
    assert before.get("dw.bias") is None and after["dw.bias"].abs().max() > 0  # created where there was none
    # the dw channels lose their 24 small weights' share of a positive input: the correction adds it back
    assert (after["dw.bias"] > 0).all()


@pytest.mark.parametrize("target", ["onnx", "pte", "tflite"])
def test_int8_snr_rises(planted, tmp_path, target):
    model, calib, test = planted
    convert = get_route("torch", target).load()
    ref = model.run(test.arrays)
    fixed, _ = correct(model.obj, calib.arrays, weight_qmax(target, "int8"))
    got = {}
    for name, m in (("plain", model), ("corrected", replace(model, obj=fixed))):
        path = tmp_path / f"{name}.{target}"
        convert(m, get_recipe("int8"), calib, path, ConvertOptions())
        got[name] = score(ref, run_artifact(path, target, samples_of(test.arrays)))["snr_db"]
    # measured: onnx 30.4 -> 47.9 dB, pte 30.1 -> 40.8 dB, tflite 30.5 -> 44.4 dB
    assert got["corrected"] > got["plain"] + 5, got


def _export(tmp_path, name, mode):
    out = tmp_path / name
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "fp32,int8", "--calib",
                                 "digits:train", "--eval", "digits:test", "--bias-correction", mode, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "time: " in r.output  # export's last line: where its time went
    return {a["recipe"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}


def _smoke_snr(art) -> float:
    return art["smoke"]["accuracy"]["snr_db"]


def test_auto_through_export_and_fp32_untouched(tmp_path):
    """Past the simulation's gate, auto applies the correction on its prediction: one conversion, and the
    shipped int8 artifact's real SNR (the smoke's, on the golden samples) is well above the same export's
    without correction."""
    arts = _export(tmp_path, "auto", "auto")
    timings = json.loads((tmp_path / "auto" / "manifest.json").read_text())["timings"]
    # the simulation's seconds are counted as the rewrite's decision, not as conversion time
    assert {"load", "golden reference", "rewrite decisions", "conversions", "smoke runs"} <= set(timings["stages"])
    assert "rewrite trials" not in timings["stages"], timings  # applied on the prediction: no trial
    assert sum(timings["stages"].values()) == pytest.approx(timings["total"], abs=0.05)
    rec = arts["int8"]["bias_correction"]
    assert rec["mode"] == "auto" and rec["applied"] and rec["layers"] == 3
    assert rec["trial"] is False and "simulation" in rec["decided"] and arts["int8"]["conversions"] == 1, rec
    assert rec["simulated"]["gain_db"] >= rec["simulated"]["threshold_db"], rec
    assert rec["weight_qmax"] == 127
    assert "bias_correction" not in arts["fp32"]
    plain = _export(tmp_path, "off", "off")
    assert "bias_correction" not in plain["int8"]
    assert _smoke_snr(arts["int8"]) > _smoke_snr(plain["int8"]) + 5, (_smoke_snr(arts["int8"]),
                                                                      _smoke_snr(plain["int8"]))
    assert plain["fp32"]["sha256"] == arts["fp32"]["sha256"]  # the fp32 artifact: the same bytes


def test_auto_is_the_default_for_a_module_and_skips_an_exported_program(torch_digits_pt2, tmp_path):
    out = tmp_path / "module"
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "int8", "--calib", "digits:train",
                                 "--eval", "digits:test", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "manifest.json").read_text())["artifacts"][0]["bias_correction"]
    assert rec["mode"] == "auto" and rec["applied"] and rec["predicted_gain_db"] > 0, rec
    out = tmp_path / "pt2"  # a .pt2 has no nn.Module to rewrite: the default export goes on without it
    r = CliRunner().invoke(cli, ["export", torch_digits_pt2.source, "--to", "onnx", "--quant", "int8", "--calib",
                                 "digits:train", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "bias_correction" not in json.loads((out / "manifest.json").read_text())["artifacts"][0]


def test_refuses_an_exported_program(torch_digits_pt2, tmp_path):
    r = CliRunner().invoke(cli, ["export", torch_digits_pt2.source, "--to", "onnx", "--quant", "int8", "--calib",
                                 "digits:train", "--bias-correction", "on", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "nn.Module" in r.output


def test_record_is_that_of_the_kept_artifact_with_cle_auto(tmp_path, monkeypatch):
    """CLE auto converts without and with equalization and keeps one; bias correction's trial then
    starts from the kept one (quantize/rewrites.py: one sequence, not each way around the other), so
    its 'without' is CLE's kept figure, and its record is the shipped artifact's. (Bias correction
    takes the real trial where no simulation can decide it: made so here.)"""
    # CLE's simulated gain on this net is under auto's gate, which would skip the real trial: force it
    monkeypatch.setattr("edgeship.quantize.equalize.GATE_DB", float("-inf"))
    monkeypatch.setattr("edgeship.quantize.rewrites.Sequence._simulated_gain", lambda *a: None)
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "int8", "--calib", "digits:train",
                                 "--eval", "digits:test", "--cle", "auto", "--bias-correction", "auto",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    cle, rec = art["cle"], art["bias_correction"]
    kept = cle["snr_db_with"] if cle["applied"] else cle["snr_db_without"]
    assert cle["trial"] and rec["trial"] and rec["snr_db_without"] == kept, (cle, rec)
    assert rec["applied"] and rec["snr_db_with"] > kept and art["conversions"] == 3, (rec, art["conversions"])


def test_auto_opens_the_trial_only_where_the_simulated_gain_clears_its_overstatement(tmp_path, monkeypatch):
    """The simulation overstates bias correction's real gain (quantize/rewrites.py: BIAS_SIM_OVERSTATES,
    measured), so auto converts a second time only where simulated gain / that factor reaches GATE_DB.
    Raised past this net's simulated gain, the trial stays shut: one conversion, the reason recorded, and
    the 'without' simulation is the one CLE's gate already ran (each module simulated once)."""
    monkeypatch.setattr("edgeship.quantize.rewrites.BIAS_SIM_OVERSTATES", 1000.0)
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "int8", "--calib", "digits:train",
                                 "--eval", "digits:test", "--cle", "auto", "--out", str(out)])
    assert r.exit_code == 0, r.output
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    rec = art["bias_correction"]
    assert rec["applied"] is False and rec["trial"] is False and "overstates" in rec["skipped"], rec
    assert rec["simulated"]["threshold_db"] == 1000.0 and art["conversions"] == 1
    assert rec["simulated"]["snr_db_without"] == art["cle"]["simulated"]["snr_db_without"]
    assert "overstates it 1000x" in r.output
