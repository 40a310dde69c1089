"""GPTQ weight rounding (quantize/weight_rounding.py) on an MTCNN-shaped net trained on digits
(tests/planted/heads_torch.py: PReLU, three heads, a small regression output that is the weakest):
the rewritten weights lie on the route's own grid (the route's round-to-nearest leaves them as they
are, each channel's scale unchanged), the weakest output's SNR of the real .onnx int16x8 artifact
rises, and --weight-rounding auto records its measured choice through export."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.convert import ConvertOptions, get_route
from edgeship.data import load_data
from edgeship.errors import UnsupportedError
from edgeship.quantize import get_recipe
from edgeship.quantize.bias_correction import fake_quant_weight
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.quantize.weight_rounding import Plan, round_weights
from edgeship.sources import load_model

from conftest import REPO

PLANTED = f"{REPO / 'tests' / 'planted' / 'heads_torch.py'}:build"
KINDS = (torch.nn.Conv2d, torch.nn.Linear)


@pytest.fixture(scope="module")
def planted():
    model = load_model(PLANTED)
    return model, load_data("digits:train", model.io).take(64), load_data("digits:test", model.io).take(100)


@pytest.mark.parametrize("qmax", [127, 64])
def test_weights_on_the_routes_grid(planted, qmax):
    model, calib, _ = planted
    rounded, record = round_weights(model.obj, calib.arrays, qmax)
    assert record["layers"] == 5 and record["weight_qmax"] == qmax
    assert record["output_error_ratio"] < 1  # GPTQ's layer output error is below round-to-nearest's
    before = dict(model.obj.named_modules())
    changed = 0
    for name, layer in rounded.named_modules():
        if not isinstance(layer, KINDS):
            continue
        w, w0 = layer.weight.detach(), before[name].weight.detach()
        scale = w0.abs().flatten(1).amax(1) / qmax
        # each channel's largest weight is kept, so the route's scale (max|w| / qmax) is unchanged ...
        assert torch.allclose(w.abs().flatten(1).amax(1), w0.abs().flatten(1).amax(1), rtol=0, atol=1e-7)
        # ... and the route's round-to-nearest returns exactly these integers
        ints = w.flatten(1) / scale[:, None]
        assert (ints - ints.round()).abs().max() < 1e-3
        assert torch.allclose(fake_quant_weight(w, qmax), w, rtol=0, atol=1e-6)
        # not round-to-nearest: some weights went to the other neighbour
        changed += int((fake_quant_weight(w0, qmax) != w).sum())
    assert changed > 0


def test_int16x8_onnx_weakest_output_rises(planted, tmp_path):
    model, calib, test = planted
    convert = get_route("torch", "onnx").load()
    ref = model.run(test.arrays)
    rounded, _ = round_weights(model.obj, calib.arrays, 127)
    got = {}
    for name, m in (("nearest", model), ("gptq", replace(model, obj=rounded))):
        path = tmp_path / f"{name}.onnx"
        convert(m, get_recipe("int16x8"), calib, path, ConvertOptions())
        got[name] = score(ref, run_artifact(path, "onnx", samples_of(test.arrays)))
    # the box head is the weakest output both ways; measured: 20.5 -> 24.4 dB on the digits test images
    assert got["nearest"]["snr_db"] == got["nearest"]["snr_db_per_output"][0]
    assert got["gptq"]["snr_db"] > got["nearest"]["snr_db"] + 2, got


def test_auto_through_export_and_fp32_untouched(tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "fp32,int16x8", "--calib",
                                 "digits:train", "--calib-samples", "64", "--eval", "digits:test",
                                 "--golden-samples", "100", "--weight-rounding", "auto", "--bias-correction", "off",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    arts = {a["recipe"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    rec = arts["int16x8"]["weight_rounding"]
    assert rec["mode"] == "auto" and rec["applied"] and rec["layers"] == 5 and rec["weight_qmax"] == 127
    assert rec["snr_db_with"] > rec["snr_db_without"] + 2, rec
    assert "weight_rounding" not in arts["fp32"]
    assert "weight rounding auto" in r.output and "-> applied" in r.output
    assert arts["int16x8"]["conversions"] == 2  # nearest and GPTQ, the kept trial artifact shipped as it is


def test_refuses_a_model_it_cannot_rewrite():
    keras_model = SimpleNamespace(kind="keras-model", name="net")
    with pytest.raises(UnsupportedError, match="rewrites a PyTorch nn.Module"):
        Plan("gptq", keras_model, [], [])


def test_quant_auto_with_weight_rounding_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["export", PLANTED, "--to", "onnx", "--quant", "auto", "--max-drop", "1",
                                 "--calib", "digits:train", "--eval", "digits:test", "--weight-rounding", "gptq",
                                 "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    assert "--quant auto and --weight-rounding cannot be combined yet" in " ".join(r.output.split())
    assert "Traceback" not in r.output and not (tmp_path / "b").exists()
