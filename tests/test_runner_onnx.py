"""The .onnx runner and inspector (runtime/onnx.py): standalone, fast to start, threads honoured,
clear about broken files; and `--to onnx` end to end through the CLI (export, inspect, validate)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.runtime.emulated import AGENT_MODULES, OPTIONAL_AGENT_MODULES
from edgeship.runtime.standalone import onnx as onnx_runtime
from edgeship.runtime.standalone.onnx import Runner, inspect_artifact


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle(torch_digits_pt2, tmp_path_factory):
    """fp32 + int8 .onnx of the digits CNN (.pt2 source), exported by the CLI with an auto reference."""
    out = tmp_path_factory.mktemp("onnx_e2e") / "bundle"
    r = run_cli("export", torch_digits_pt2.source, "--to", "onnx", "--quant", "fp32,int8", "--calib", "digits:train",
                "--eval", "digits:test", "--golden-samples", "300", "--reference-device", "auto", "--out", out)
    assert r.exit_code == 0, r.output + r.stderr
    return out, r


def test_runner_module_is_standalone():
    """Pushed to devices on its own: standard library, numpy and onnxruntime (onnx is optional)."""
    tree = ast.parse(Path(onnx_runtime.__file__).read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    # siblings in runtime/standalone/ travel with it in the agent package (runtime/emulated.py)
    siblings = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert siblings <= set(AGENT_MODULES + OPTIONAL_AGENT_MODULES), siblings
    assert roots <= {"__future__", "os", "numpy", "onnxruntime", "onnx"}, roots


def test_export_validate_end_to_end(bundle, torch_digits_pt2, tmp_path):
    out, export_run = bundle
    m = json.loads((out / "manifest.json").read_text())
    if not _cuda():  # auto without a GPU: the CPU, and one line that says so
        assert "no CUDA device found, so the float reference runs on the CPU" in export_run.stderr
        assert m["reference"]["device"] == "cpu"
    assert m["reference"]["batch"] == 256 and m["reference"]["samples"] == 300 and m["reference"]["seconds"] > 0
    assert sorted(a["path"] for a in m["artifacts"]) == ["digits_cnn.fp32.onnx", "digits_cnn.int8.onnx"]
    assert {"onnx", "onnxruntime", "onnxscript"} <= set(m["tools"])
    report = tmp_path / "report.json"
    r = run_cli("validate", out, "--runs", "20", "--json", report)
    assert r.exit_code == 0, r.output + r.stderr
    assert "runtimes: onnxruntime-native 1." in r.output and "(.onnx)" in r.output  # the native runner by default
    by = {a["artifact"]: a for a in json.loads(report.read_text())["artifacts"]}
    fp32, int8 = by["digits_cnn.fp32.onnx"], by["digits_cnn.int8.onnx"]
    assert fp32["status"] == int8["status"] == "pass"
    assert fp32["runtime"].startswith("onnxruntime-native ") and fp32["delegate"]["name"] == "CPUExecutionProvider"
    assert fp32["accuracy"]["max_abs_error"] < 1e-4
    assert int8["accuracy"]["accuracy_drop"] <= 1.0 and int8["latency"]["p50_ms"] > 0
    assert abs(fp32["accuracy"]["reference_accuracy"] - torch_digits_pt2.float_accuracy) < 1.0


def test_inspect_command(bundle):
    out, _ = bundle
    r = run_cli("inspect", out / "digits_cnn.int8.onnx")
    assert r.exit_code == 0, r.output + r.stderr
    assert "digits_cnn.int8.onnx: onnx" in r.output and "QuantizeLinear" in r.output
    assert "run by onnxruntime" in r.output and "per-channel" in r.output


def test_threads_are_honoured(bundle, torch_digits_pt2):
    out, _ = bundle
    for threads in (1, 2):
        runner = Runner(str(out / "digits_cnn.fp32.onnx"), threads=threads)
        assert runner._session.get_session_options().intra_op_num_threads == threads
        assert str(threads) in runner.delegate["detail"]
    x = torch_digits_pt2.test.sample(0)
    assert np.allclose(Runner(str(out / "digits_cnn.fp32.onnx"), threads=2).run(x)[0],
                       torch_digits_pt2.model.run(x)[0], atol=1e-5)


def test_import_and_load_pull_in_no_framework(bundle):
    """What keeps start-up fast: no framework is imported. The seconds are measured in bench/timings.py."""
    out, _ = bundle
    code = (
        "import sys, json\n"
        "from edgeship.runtime.standalone.onnx import Runner\n"
        f"r = Runner({str(out / 'digits_cnn.int8.onnx')!r})\n"
        "print(json.dumps({'runtime': r.runtime,\n"
        "    'heavy': sorted(m for m in ('tensorflow', 'torch', 'keras', 'onnx') if m in sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["runtime"].startswith("onnxruntime "), got


def test_wrong_input_shape_is_one_line(bundle):
    out, _ = bundle
    runner = Runner(str(out / "digits_cnn.fp32.onnx"))
    with pytest.raises(ValueError, match=r"input 'input' takes shape \[1, 1, 8, 8\], got \[1, 8, 8, 1\]"):
        runner.run([np.zeros((1, 8, 8, 1), np.float32)])


@pytest.mark.parametrize("content", [b"", b"\x08\x07junk that is not protobuf" * 3])
def test_corrupt_onnx_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        Runner(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError):
        inspect_artifact(str(path))
    r = run_cli("inspect", path)
    assert r.exit_code == 2
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr + r.output
    assert "not an ONNX model" in r.stderr


def test_truncated_artifact_fails_validation_not_edgeship(bundle, tmp_path):
    out, _ = bundle
    data = (out / "digits_cnn.int8.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    r = run_cli("validate", path, "--runs", "5")
    # the artifact fails its check (exit 1), as a cut .tflite does (test_fuzz.py); 2 is for bad input
    # (a path or option edgeship refuses before running anything)
    assert r.exit_code == 1, (r.exit_code, r.output + r.stderr)
    assert "Traceback" not in r.stderr + r.output and "cut.onnx" in r.stderr + r.output


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
