"""Export gives a verdict, per artifact, and keeps what succeeded.

- An int8 artifact that misses its recipe's accuracy floor (the floors validate uses) makes export
  exit 1 with the bundle written and the artifact named and marked; fp32 beside it passes.
- `--floor` accepts a known loss, recorded beside the figure; validate then holds the artifact to it.
- A conversion that fails is one line with the converter's words, recorded in the manifest; the
  other artifacts are written, and the export exits 1.

Real models: the planted fragile-layer CNN (tests/planted/fragile_torch.py, trained on digits, one
activation channel 1000x the others: plain int8 collapses) and a Keras text classifier with an
Embedding, whose int8 .pte PT2E refuses (the indices reach `embedding` as float) while its int8
.tflite converts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli
from edgeship.gates.floors import floors_for, parse_floors
from edgeship.errors import InputError

from conftest import REPO

pytestmark = pytest.mark.slow

FRAGILE = f"{Path(__file__).resolve().parent / 'planted' / 'fragile_torch.py'}:build"
PLAIN_INT8 = ["--cle", "off", "--bias-correction", "off"]  # the rescues off: the loss must show


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def _validated(artifact: Path) -> tuple[str, set[str]]:
    """validate's status for ARTIFACT on its bundle's golden vectors, and the names of its failed checks."""
    from edgeship.validation import ValidateRequest, validate

    (r,), _ = validate(ValidateRequest(artifact, warmup=0, runs=2))
    return getattr(r["status"], "value", r["status"]), {c["name"] for c in r["checks"] if not c["passed"]}


def test_floor_syntax_and_precedence():
    floors = parse_floors(["cosine=0.9", "int8:top1_drop=3", "int8:cosine=0.5"])
    assert floors_for("int8", floors) == {"cosine": 0.5, "top1_drop": 3.0}
    assert floors_for("fp32", floors) == {"cosine": 0.9, "top1_drop": 0.0}
    assert floors_for("int8") == {"cosine": 0.98, "top1_drop": 1.0}
    for bad in ("int8:cosin=0.9", "in8:cosine=0.9", "cosine=high", "cosine", "top1_drop=-1"):
        with pytest.raises(InputError):
            parse_floors([bad])


def test_a_floor_miss_exits_1_with_the_bundle_written_and_the_artifact_named(tmp_path):
    out = tmp_path / "fragile"
    args = ["export", FRAGILE, "--to", "tflite", "--quant", "fp32,int8", "--calib", "digits:train",
            "--eval", "digits:test", "--calib-samples", "100", "--out", str(out), *PLAIN_INT8]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "fragile_torch.int8.tflite" in r.output and "below their accuracy floor" in r.output
    assert "--quant auto" in r.output and "--floor" in r.output  # what to try, and how to accept it
    m = _manifest(out)
    by_recipe = {a["recipe"]: a for a in m["artifacts"]}
    assert (out / "fragile_torch.int8.tflite").is_file() and (out / "fragile_torch.fp32.tflite").is_file()
    int8 = by_recipe["int8"]["smoke"]
    assert int8["status"] == "below_floor" and int8["floors"] == {"cosine": 0.98, "top1_drop": 1.0}
    assert int8["accuracy"]["accuracy_drop"] > 1.0 or int8["accuracy"]["cosine"] < 0.98
    assert int8["missed"] and int8["samples"] == m["golden"]["samples"]
    assert by_recipe["fp32"]["smoke"]["status"] == "pass"

    # validate holds it to the same floor
    status, failed = _validated(out / "fragile_torch.int8.tflite")
    assert status == "fail" and failed and failed <= {"cosine", "accuracy_drop"}, failed

    # up to date: nothing converts again, and the miss is still a miss
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "up to date" in again.output, again.output

    # a known loss, accepted in words: exit 0, the floor recorded beside the figure, validate agrees
    accepted = tmp_path / "accepted"
    ok = CliRunner().invoke(cli, [*args[:-len(PLAIN_INT8) - 2], "--out", str(accepted), *PLAIN_INT8,
                                  "--floor", "int8:cosine=0", "--floor", "int8:top1_drop=100"])
    assert ok.exit_code == 0, ok.output
    smoke = next(a for a in _manifest(accepted)["artifacts"] if a["recipe"] == "int8")["smoke"]
    assert smoke["status"] == "pass" and smoke["floors"] == {"cosine": 0.0, "top1_drop": 100.0}
    assert smoke["accuracy"]["cosine"] == int8["accuracy"]["cosine"]  # the same artifact, the same figure
    assert _validated(accepted / "fragile_torch.int8.tflite") == ("pass", set())


def test_a_converter_failure_keeps_the_other_artifacts(tmp_path):
    """logcumsumexp has no litert-torch lowering; torch.onnx exports it (tests/planted/unsupported_op_torch.py).
    (The Keras Embedding whose int8 .pte used to fail here converts since Keras ids stay integer.)"""
    source = f"{REPO / 'tests' / 'planted' / 'unsupported_op_torch.py'}:build"
    out = tmp_path / "lse"
    r = CliRunner().invoke(cli, ["export", source, "--to", "tflite,onnx", "--quant", "fp32", "--calib",
                                 "digits:train", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    m = _manifest(out)
    shipped = {a["path"] for a in m["artifacts"]}
    assert shipped == {"unsupported_op_torch.fp32.onnx"} and (out / "unsupported_op_torch.fp32.onnx").is_file()
    failed = m["failed_artifacts"]
    assert [f["path"] for f in failed] == ["unsupported_op_torch.fp32.tflite"] and failed[0]["stage"] == "convert"
    assert "logcumsumexp" in failed[0]["error"] and "\n" not in failed[0]["error"]  # the converter's words, one line
    assert not (out / "unsupported_op_torch.fp32.tflite").exists()
    assert "unsupported_op_torch.fp32.tflite: not converted" in r.output
    # validate the bundle: the shipped artifact passes, the missing one is an error, exit 1 (it exited 0)
    r = CliRunner().invoke(cli, ["validate", str(out), "--runs", "2", "--warmup", "0", "--json", str(tmp_path / "v.json")])
    assert r.exit_code == 1, r.output
    rows = {row["artifact"]: row for row in json.loads((tmp_path / "v.json").read_text())["artifacts"]}
    assert rows["unsupported_op_torch.fp32.onnx"]["status"] == "pass"
    bad = rows["unsupported_op_torch.fp32.tflite"]
    assert bad["status"] == "error" and bad["error"].startswith("not converted:") and "logcumsumexp" in bad["error"]


def test_verbose_shows_the_traceback_and_keeps_the_same_verdict(tmp_path):
    """--verbose used to re-raise a converter's failure: exit 2 ('bad usage or input') and no bundle, where
    the same export without it exits 1 with the other artifacts written."""
    source = f"{REPO / 'tests' / 'planted' / 'unsupported_op_torch.py'}:build"
    out = tmp_path / "lse"
    r = CliRunner().invoke(cli, ["--verbose", "export", source, "--to", "tflite,onnx", "--quant", "fp32", "--calib",
                                 "digits:train", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "Traceback" in r.output and "logcumsumexp" in r.output
    assert [a["path"] for a in _manifest(out)["artifacts"]] == ["unsupported_op_torch.fp32.onnx"]
