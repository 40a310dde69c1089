"""The CLI: fast help, typo suggestions, exit codes, one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

HEAVY = ("torch", "tensorflow", "keras", "executorch", "litert_torch", "jax")


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_help_imports_no_framework():
    code = (
        "import sys\nfrom edgeship.cli import cli\n"
        "try:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert "export" in out and "Exit codes" in out


def test_typo_in_command_suggests():
    r = run_cli("exprot")
    assert r.exit_code == 2
    assert "Did you mean 'export'?" in r.output


def test_unknown_recipe_suggests_and_exits_2(tmp_path):
    r = run_cli("export", "x.keras", "--quant", "int9", "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "unknown recipe 'int9'. Did you mean 'int8'?" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_unknown_target_names_supported(tmp_path):
    r = run_cli("export", "x.keras", "--to", "tflite,coreml", "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "unknown target format 'coreml'" in r.stderr and "Supported: tflite, pte" in r.stderr


def test_missing_source(tmp_path):
    r = run_cli("export", tmp_path / "nope.keras", "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "model source not found" in r.stderr


def test_undetectable_framework(tmp_path):
    src = tmp_path / "model.onnx"
    src.write_bytes(b"not a model")
    r = run_cli("export", src, "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "cannot tell the framework" in r.stderr and "--framework" in r.stderr


def test_pickled_checkpoint_is_refused(tmp_path):
    src = tmp_path / "weights.pt"
    src.write_bytes(b"\x80\x04junk")
    r = run_cli("export", src, "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "does not unpickle" in r.stderr


def test_bad_input_shape_syntax(tmp_path):
    r = run_cli("export", "m.py:build", "--input-shape", "x=1by3", "--out", tmp_path / "b")
    assert r.exit_code == 2
    assert "cannot read --input-shape 'x=1by3'" in r.stderr


def test_validate_missing_target(tmp_path):
    r = run_cli("validate", tmp_path / "none")
    assert r.exit_code == 2 and "not found" in r.stderr


def test_validate_folder_without_manifest(tmp_path):
    r = run_cli("validate", tmp_path)
    assert r.exit_code == 2 and "is not a bundle: no manifest.json" in r.stderr


def test_inspect_corrupt_tflite_is_one_line(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    r = run_cli("inspect", bad)
    assert r.exit_code == 2
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_validate_corrupt_artifact_fails_that_artifact(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"TFL3" + np.random.default_rng(1).bytes(4096))
    out = tmp_path / "r.json"
    r = run_cli("validate", bad, "--json", out)
    assert r.exit_code == 1
    report = json.loads(out.read_text())
    assert report["artifacts"][0]["status"] == "error"
    assert report["artifacts"][0]["error"]


@pytest.mark.parametrize("argv", [["--version"], ["export", "--help"], ["validate", "--help"]])
def test_help_pages(argv):
    r = run_cli(*argv)
    assert r.exit_code == 0
    assert r.output.strip()


def _onnx_of(tmp_path, name, shape, elem):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", elem, shape)
    y = helper.make_tensor_value_info("y", elem, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], name, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def test_bench_of_a_bare_artifact_with_an_open_dimension_is_one_line(tmp_path):
    from onnx import TensorProto

    path = _onnx_of(tmp_path, "open", ["batch", 4], TensorProto.FLOAT)
    r = run_cli("bench", path, "--runs", "3", "--warmup", "1")
    assert r.exit_code == 2, r.output + r.stderr
    said = " ".join(r.stderr.split())
    assert "open.onnx: input x has an open dimension (?x4)" in said and "--input-shape" in said
    assert "Traceback" not in r.output + r.stderr


def test_bench_of_a_bare_artifact_with_integer_inputs_feeds_integers(tmp_path):
    from onnx import TensorProto

    path = _onnx_of(tmp_path, "ids", [1, 8], TensorProto.INT64)  # token ids: noise of float32 would not load
    r = run_cli("bench", path, "--runs", "3", "--warmup", "1")
    assert r.exit_code == 0, r.output + r.stderr
    assert "ids.onnx" in r.output and "Traceback" not in r.output + r.stderr
