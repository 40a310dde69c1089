"""One command end to end: export a digits model to both formats, validate, read the bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeship.bundle import read_bundle
from edgeship.cli import cli


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def torch_bundle(tmp_path_factory, torch_digits):
    out = tmp_path_factory.mktemp("e2e") / "bundle"
    r = run_cli("-q", "export", torch_digits.source, "--to", "tflite,pte", "--quant", "fp32,int8",
                "--calib", "digits:train", "--eval", "digits:test", "--golden-samples", "450", "--out", out)
    assert r.exit_code == 0, r.output + r.stderr
    return out


def test_bundle_layout_and_manifest(torch_bundle):
    b = read_bundle(torch_bundle)
    names = sorted(a["path"] for a in b.artifacts)
    assert names == ["torch_digits.fp32.pte", "torch_digits.fp32.tflite", "torch_digits.int8.pte",
                     "torch_digits.int8.tflite"]
    m = b.manifest
    assert m["model"]["framework"] == "torch" and len(m["model"]["source_sha256"]) == 64
    assert m["calibration"]["samples"] == 200 and len(m["calibration"]["sha256"]) == 64
    assert m["golden"]["samples"] == 450 and m["golden"]["has_labels"]
    assert {"torch", "executorch", "litert-torch"} <= set(m["tools"])
    for a in b.artifacts:
        assert (torch_bundle / a["path"]).stat().st_size == a["size_bytes"]
        assert a["io"]["inputs"][0]["name"] == "input" and a["io"]["inputs"][0]["layout"] == "NCHW"
        assert a["io"]["outputs"][0]["shape"] == [1, 10]
        if a["format"] == "pte":
            assert a["delegation"]["coverage"] > 0.5
    assert not list(torch_bundle.parent.glob(".*partial*"))


def test_validate_passes_and_writes_json(torch_bundle, tmp_path, torch_digits):
    import torch

    # the reference accuracy, computed here by calling the nn.Module with torch directly (not
    # through edgeship's model.run, which made the golden outputs)
    module = torch_digits.model.obj.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(torch_digits.test.arrays[0])).numpy()
    torch_top1 = float((logits.argmax(1) == torch_digits.test.labels).mean() * 100)
    out = tmp_path / "report.json"
    r = run_cli("validate", torch_bundle, "--runs", "20", "--json", out)
    assert r.exit_code == 0, r.output + r.stderr
    report = json.loads(out.read_text())
    assert report["context"]["threads"] == 1 and report["context"]["warmup"] == 5
    by = {a["artifact"]: a for a in report["artifacts"]}
    for name, a in by.items():
        assert a["status"] == "pass"
        assert a["latency"]["runs"] == 20 and a["latency"]["p50_ms"] > 0
        assert a["init_ms"] > 0 and a["first_ms"] > 0 and a["peak_rss_mb"] > 0
        assert abs(a["accuracy"]["reference_accuracy"] - torch_top1) < 1e-6
    for fmt in ("tflite", "pte"):
        assert by[f"torch_digits.fp32.{fmt}"]["accuracy"]["max_abs_error"] < 1e-4
        assert by[f"torch_digits.int8.{fmt}"]["accuracy"]["accuracy_drop"] <= 1.0
    assert "torch_digits.int8.tflite" in r.output and "pass" in r.output


def test_validate_needs_no_framework(torch_bundle):
    """Golden vectors make validation framework-free: neither torch nor TensorFlow is imported."""
    code = (
        "import sys\nfrom edgeship.cli import cli\n"
        f"try:\n    cli(['-q', 'validate', {str(torch_bundle)!r}, '--runs', '3'])\nexcept SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print('heavy', sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "exit 0" in out and "heavy []" in out, out


def test_validate_with_data_reruns_the_source(torch_bundle):
    r = run_cli("validate", torch_bundle, "--data", "digits:test", "--runs", "3")
    assert r.exit_code == 0, r.output + r.stderr
    assert "source re-run over digits:test" in r.output


def test_validate_one_artifact_of_the_bundle(torch_bundle):
    r = run_cli("validate", torch_bundle / "torch_digits.int8.tflite", "--runs", "3")
    assert r.exit_code == 0 and "torch_digits.int8.tflite" in r.output and "fp32" not in r.output.split("\n", 2)[-1]


def test_strict_limit_fails_with_exit_1(torch_bundle):
    r = run_cli("validate", torch_bundle, "--min-cosine", "0.9999999999", "--runs", "3")
    assert r.exit_code == 1
    assert "FAIL" in r.output and "cosine" in r.output


def test_artifact_changed_after_export_fails(torch_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(torch_bundle, copy)
    shutil.copy(copy / "torch_digits.int8.tflite", copy / "torch_digits.fp32.tflite")  # runs fine, wrong bytes
    r = run_cli("validate", copy / "torch_digits.fp32.tflite", "--runs", "3")
    assert r.exit_code == 1
    assert "sha256" in r.output and "changed after export" in r.output


def test_same_export_again_is_skipped(torch_bundle, torch_digits):
    """Same source, data, options and tool versions as the manifest's inputs_sha256: nothing to redo."""
    before = (torch_bundle / "manifest.json").read_bytes()
    r = run_cli("export", torch_digits.source, "--to", "tflite,pte", "--quant", "fp32,int8", "--calib",
                "digits:train", "--eval", "digits:test", "--golden-samples", "450", "--out", torch_bundle)
    assert r.exit_code == 0, r.output + r.stderr
    assert "up to date" in r.output + r.stderr
    assert (torch_bundle / "manifest.json").read_bytes() == before


def test_inputs_hash_follows_what_the_bytes_depend_on(tmp_path):
    from edgeship.pipeline import ExportRequest
    from edgeship.uptodate import inputs_sha256, up_to_date

    src = tmp_path / "m.py"
    src.write_text("def build(): ...\n")
    req = ExportRequest(source=f"{src}:build", out=tmp_path / "b", calib="digits:train")
    key = inputs_sha256(req)
    assert inputs_sha256(ExportRequest(source=f"{src}:build", out=tmp_path / "elsewhere", calib="digits:train",
                                       force=True, verbose=True)) == key  # where and how loudly: no matter
    assert inputs_sha256(ExportRequest(source=f"{src}:build", out=tmp_path / "b", calib="digits:test")) != key
    assert inputs_sha256(ExportRequest(source=f"{src}:build", out=tmp_path / "b", calib="digits:train",
                                       recipes="int8")) != key
    src.write_text("def build(): return None\n")
    assert inputs_sha256(req) != key  # the source file changed
    assert up_to_date(tmp_path / "b", key) is None  # no bundle there


def test_existing_bundle_is_kept_without_force(torch_bundle, torch_digits):
    before = (torch_bundle / "manifest.json").read_bytes()
    r = run_cli("export", torch_digits.source, "--to", "tflite", "--quant", "fp32", "--out", torch_bundle)
    assert r.exit_code == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert (torch_bundle / "manifest.json").read_bytes() == before


def test_int8_without_calibration_data(torch_digits, tmp_path):
    r = run_cli("export", torch_digits.source, "--quant", "int8", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "needs calibration data" in r.stderr and "--calib" in r.stderr
    assert not (tmp_path / "b").exists()


def test_tiny_calibration_set(torch_digits, tmp_path):
    import numpy as np

    np.savez(tmp_path / "few.npz", input=np.zeros((4, 1, 8, 8), np.float32))
    r = run_cli("export", torch_digits.source, "--quant", "int8", "--calib", tmp_path / "few.npz",
                "--out", tmp_path / "b")
    assert r.exit_code == 2 and "has 4 samples; int8 calibration needs at least 16" in r.stderr
    assert not (tmp_path / "b").exists()


def test_wrong_shape_calibration_data(torch_digits, tmp_path):
    import numpy as np

    np.savez(tmp_path / "nhwc.npz", input=np.zeros((50, 8, 8, 1), np.float32))
    r = run_cli("export", torch_digits.source, "--quant", "int8", "--calib", tmp_path / "nhwc.npz",
                "--out", tmp_path / "b")
    assert r.exit_code == 2 and "samples have shape 8x8x1, the model takes 1x8x8" in r.stderr
    assert "layout" in r.stderr
