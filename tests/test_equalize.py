"""Cross-layer equalization on a net built to need it (tests/planted/ranges_torch.py: channel
ranges 100x apart before a depthwise conv): the float function is unchanged, and int8 SNR on the
digits test images rises on .onnx and .pte; --cle auto records the measured choice."""

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
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.quantize.equalize import PerChannelCap, equalize
from edgeship.sources import load_model

from conftest import REPO

PLANTED = REPO / "tests" / "planted" / "ranges_torch.py"


@pytest.fixture(scope="module", params=["build", "build_relu"])
def planted(request):
    model = load_model(f"{PLANTED}:{request.param}")
    return model, load_data("digits:train", model.io).take(200), load_data("digits:test", model.io).take(100)


def test_float_outputs_unchanged(planted):
    model, _, test = planted
    eq, pairs = equalize(model.obj)
    assert pairs == 2
    x = torch.from_numpy(test.arrays[0])
    with torch.no_grad():
        a, b = model.obj(x), eq(x)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max()))
    w = eq.conv1.weight.abs().flatten(1).amax(1)
    assert float(w.max() / w.min()) < 10  # the 100x spread is gone from the first conv's channels


def test_relu6_becomes_a_per_channel_cap():
    model = load_model(f"{PLANTED}:build").obj
    eq, _ = equalize(model)
    called = [eq.get_submodule(n.target) for n in eq.graph.nodes if n.op == "call_module"]
    caps = [m for m in called if type(m).__name__ == type(PerChannelCap(torch.ones(1))).__name__]
    assert len(caps) == 2 and not any(isinstance(m, torch.nn.ReLU6) for m in called)


@pytest.mark.parametrize("target", ["onnx", "pte"])
def test_int8_snr_rises(planted, tmp_path, target):
    model, calib, test = planted
    convert = get_route("torch", target).load()
    ref = model.run(test.arrays)
    eq, _ = equalize(model.obj)
    got = {}
    for name, m in (("plain", model), ("cle", replace(model, obj=eq))):
        path = tmp_path / f"{name}.{target}"
        convert(m, get_recipe("int8"), calib, path, ConvertOptions())
        got[name] = score(ref, run_artifact(path, target, samples_of(test.arrays)))["snr_db"]
    assert got["cle"] > got["plain"] + 5, got  # measured: onnx 26.2 -> 36.7 dB, pte 23.0 -> 34.8 dB


def test_cle_auto_through_export(tmp_path):
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", f"{PLANTED}:build", "--to", "onnx", "--quant", "fp32,int8", "--calib",
                                 "digits:train", "--eval", "digits:test", "--cle", "auto", "--out", str(out)])
    assert r.exit_code == 0, r.output
    arts = {a["recipe"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    rec = arts["int8"]["cle"]
    assert rec["mode"] == "auto" and rec["applied"] and rec["snr_db_with"] > rec["snr_db_without"]
    assert "cle" not in arts["fp32"]


def test_cle_refuses_an_exported_program(torch_digits_pt2, tmp_path):
    r = CliRunner().invoke(cli, ["export", torch_digits_pt2.source, "--to", "onnx", "--quant", "int8", "--calib",
                                 "digits:train", "--cle", "on", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "nn.Module" in r.output
