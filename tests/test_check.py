"""`edgeship check` end to end on real digits models, real exports and real runtimes.

A good model passes; each planted regression fails with the right gate named in the terminal,
report.json, junit.xml and report.md: an int8 artifact calibrated on the wrong data (accuracy),
the same network with 16 identity convolutions added (latency and size, the function unchanged),
and a baseline taken on another device. No verdict here rests on how fast this machine is: the
latency gates are fed signals the test controls (a budget no real run can meet, a planted model
with 30 times the arithmetic); how often the real latency gates flake is measured in
bench/timings.py, and the no-flake property on stated distributions in test_gates.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ALL = ["tflite:fp32", "tflite:int8", "pte:fp32", "pte:int8"]  # a full product: one export
GATES = """
[measure]
warmup = 10
runs = 100

[gates.accuracy]
min_top1 = 90.0

[gates.size]
max_kb = 256

[gates.memory]
max_peak_mb = 4096
"""
# The trained digits CNN with 16 extra 3x3 convolutions after its second ReLU, each the identity
# times a power of two (2, 1/2, 4, 1/4, ...: exact in float, distinct weights so no converter can
# share them, product 1). Inputs are non-negative there, so conv + ReLU passes them through: the
# same function and accuracy, about 30 times the arithmetic, several times the size. An honest
# slowdown, measured by the real runtime.
HEAVY = '''
import torch
import torch.nn as nn

from edgeship.demo_models import TORCH_INPUT, train_torch_cnn


def scaled_identity(channels, scale):
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    nn.init.dirac_(conv.weight)
    with torch.no_grad():
        conv.weight.mul_(scale)
    nn.init.zeros_(conv.bias)
    return [conv, nn.ReLU()]


def build():
    model, _ = train_torch_cnn()
    layers = list(model)
    scales = [s for k in range(1, 9) for s in (2.0**k, 2.0**-k)]
    extra = [m for s in scales for m in scaled_identity(32, s)]
    return nn.Sequential(*layers[:4], *extra, *layers[4:]).eval(), (torch.zeros(TORCH_INPUT),)
'''


def config(folder: Path, source: str, targets: list[str], calib: str = "digits:train", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = ", ".join(f'{{ format = "{t.split(":")[0]}", recipe = "{t.split(":")[1]}" }}' for t in targets)
    text = (f'out = "bundle"\ntargets = [{items}]\ndevices = ["local"]\n\n[model]\nsource = "{source}"\n'
            f'name = "digits"\n\n[data]\ncalib = "{calib}"\neval = "digits:test"\ngolden_samples = 450\n'
            + GATES + extra)
    path = folder / "edgeship.toml"
    path.write_text(text)
    return path


def check(*args):
    r = CliRunner().invoke(cli, ["check", *map(str, args)])
    return r


def reports(cfg: Path) -> Path:
    return cfg.parent / "bundle-report"


def failing(out: Path) -> set[tuple[str, str]]:
    data = json.loads((out / "report.json").read_text())
    return {(g["gate"], g["target"]) for g in data["gates"] if g["status"] in ("fail", "not_measured")}


def assert_named(out: Path, output: str, gate: str, target: str):
    """The failing gate is named in the terminal, report.json, junit.xml and report.md (in `out`)."""
    assert f"✗ {gate} {target}@local failed" in output, output[-3000:]
    assert (gate, target) in failing(out)
    root = ET.parse(out / "junit.xml").getroot()
    case = root.find(f"./testsuite[@name='{target}@local']/testcase[@name='{gate}']")
    assert case is not None and case.find("failure") is not None
    md = (out / "report.md").read_text().split("### Results")[0]
    assert f"| `{target}` | local | `{gate}` |" in md and "❌ **FAIL**" in md


@pytest.fixture(scope="module")
def good(tmp_path_factory, torch_digits):
    cfg = config(tmp_path_factory.mktemp("good"), torch_digits.source, ALL)
    r = check(cfg)
    return cfg, r


def test_good_model_passes(good):
    cfg, r = good
    assert r.exit_code == 0, r.output + r.stderr
    data = json.loads((reports(cfg) / "report.json").read_text())
    assert data["status"] == "pass" and data["summary"]["fail"] == 0 and data["summary"]["not_measured"] == 0
    assert sorted(r["target"] for r in data["results"]) == sorted(ALL)
    gates = {(g["gate"], g["target"]) for g in data["gates"]}
    for t in ALL:
        for name in ("accuracy.top1_drop", "accuracy.cosine_drop", "accuracy.min_top1", "size", "memory"):
            assert (name, t) in gates
        assert ("latency.p50", t) not in gates  # no latency budget in this config: the host's speed decides nothing
    for rec in data["results"]:  # latency is still measured and reported, with its raw samples
        assert rec["latency"]["runs"] == 100 and len(rec["latency"]["samples_ms"]) == 100
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (reports(cfg) / name).stat().st_size > 0
    assert "check passed" in r.output
    assert ET.parse(reports(cfg) / "junit.xml").getroot().get("failures") == "0"


LATENCY_NO_RUN_CAN_MEET = """
[gates.latency]
p50_ms = 1e-6
p90_ms = 1e-6
"""  # one nanosecond: every real run is slower, whatever the machine


def test_a_latency_budget_no_run_can_meet_fails_named_everywhere(good, tmp_path):
    """The latency gates end to end, on a signal the test controls: the good bundle, re-checked with
    a budget of one nanosecond, fails latency.p50 and latency.p90 for every target (and nothing else)."""
    cfg, r = good
    assert r.exit_code == 0
    tight = cfg.with_name("edgeship-tight.toml")
    tight.write_text(cfg.read_text() + LATENCY_NO_RUN_CAN_MEET)
    out = tmp_path / "reports"
    r = check(tight, "--skip-export", "--report-dir", out)
    assert r.exit_code == 1, r.output + r.stderr
    for target in ALL:
        for gate in ("latency.p50", "latency.p90"):
            assert_named(out, r.output, gate, target)
    assert failing(out) == {(g, t) for g in ("latency.p50", "latency.p90") for t in ALL}
    data = json.loads((out / "report.json").read_text())
    for g in data["gates"]:
        if g["gate"].startswith("latency."):  # the verdict rests on the raw samples, said so
            assert g["limit"] == 1e-6 and g["value"] > 1e-6 and "over 100 runs" in g["detail"], g


def test_planted_accuracy_drop_int8_calibrated_on_dim_images(tmp_path_factory, torch_digits):
    folder = tmp_path_factory.mktemp("dim")
    x = torch_digits.train.arrays[0][:200]
    np.savez(folder / "dim.npz", input=(x * 0.05).astype(np.float32))  # a normalisation bug: 5% brightness
    cfg = config(folder, torch_digits.source, ["pte:int8"], calib=str(folder / "dim.npz"))
    r = check(cfg)
    assert r.exit_code == 1, r.output + r.stderr
    assert_named(reports(cfg), r.output, "accuracy.top1_drop", "pte:int8")
    assert ("size", "pte:int8") not in failing(reports(cfg))


def test_planted_slowdown_and_growth_heavier_model(good, tmp_path_factory):
    good_cfg, r = good
    assert r.exit_code == 0
    folder = tmp_path_factory.mktemp("heavy")
    (folder / "heavy.py").write_text(HEAVY)
    cfg = config(folder, "heavy.py:build", ["tflite:fp32"])
    r = check(cfg, "--baseline", reports(good_cfg) / "report.json")
    assert r.exit_code == 1, r.output + r.stderr
    for gate in ("regression.latency", "regression.size", "size"):
        assert_named(reports(cfg), r.output, gate, "tflite:fp32")
    data = json.loads((reports(cfg) / "report.json").read_text())
    by = {g["gate"]: g for g in data["gates"]}
    assert by["baseline.match"]["status"] == "pass"
    # the local runner reports its raw samples, so the verdict is the statistical one, with its confidence
    assert len(data["results"][0]["latency"]["samples_ms"]) == 100
    assert by["regression.latency"]["confidence"] > 0.999 and "Mann-Whitney" in by["regression.latency"]["detail"]
    assert "no raw samples" not in by["regression.latency"]["detail"]
    for name in ("accuracy.top1_drop", "accuracy.cosine_drop", "regression.accuracy"):
        assert by[name]["status"] == "pass"  # the same function: only the cost changed


def test_planted_baseline_from_another_device(good, tmp_path):
    cfg, r = good
    assert r.exit_code == 0
    data = json.loads((reports(cfg) / "report.json").read_text())
    for rec in data["results"]:
        rec["device"] = "ssh://pi@raspberrypi"
        rec["platform"] = {**(rec.get("platform") or {}), "machine": "aarch64"}
    (tmp_path / "pi.json").write_text(json.dumps(data))
    out = tmp_path / "reports"
    r = check(cfg, "--skip-export", "--baseline", tmp_path / "pi.json", "--report-dir", out)
    assert r.exit_code == 1, r.output + r.stderr
    for target in ALL:
        assert_named(out, r.output, "baseline.match", target)
    gates = json.loads((out / "report.json").read_text())["gates"]
    assert all(g["status"] == "skipped" for g in gates if g["gate"].startswith("regression."))
    assert "device ssh://pi@raspberrypi vs local" in r.output
