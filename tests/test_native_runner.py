"""edgeship's native ExecuTorch runner on the host: every recipe's .pte against ExecuTorch's
Python runtime, the portable int8 .pte that the Python runtime cannot load, a crash and a hang
contained, 300 fuzzed .pte files, and the fallback to the Python runtime on a host without a
compiler. Real exports of the digits CNN, the real runner built with the system g++."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from bench_modules import bench_module

from edgeship.bundle import read_bundle
from edgeship.runtime import native_build
from edgeship.runtime.local import LocalDevice

from device_support import segfault_when_running

mutate = bench_module("mutations").mutate

RECIPES = ("fp32", "fp16", "dynamic-int8", "int8")
FUZZ_CASES = 300


def device(runtime: str) -> LocalDevice:
    d = LocalDevice()
    d.pte_runtime = runtime
    return d


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, torch_digits):
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path_factory.mktemp("native") / "bundle"
    export(ExportRequest(source=torch_digits.source, out=out, targets=["pte"], recipes=",".join(RECIPES),
                         calib="digits:train", golden_samples=64))
    return read_bundle(out)


def pte(bundle, recipe):
    rec = next(a for a in bundle.artifacts if a["format"] == "pte" and a["recipe"] == recipe)
    return bundle.artifact_path(rec), rec


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_matches_the_python_runtime(bundle, recipe):
    path, rec = pte(bundle, recipe)
    inputs = bundle.golden().inputs
    native = device("native").run_artifact(path, inputs, rec["io"], warmup=2, runs=5)
    python = device("python").run_artifact(path, inputs, rec["io"], warmup=2, runs=5)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["runtime"] == f"executorch-native {native_build.executorch_version()}"
    assert python.result["runtime"].startswith("executorch ")
    assert native.result["platform"]["runner"] == "native"
    assert native.result["delegate"]["active"] is True and "XnnpackBackend" in native.result["delegate"]["detail"]
    (a,), (b,) = native.outputs, python.outputs
    assert a.shape == b.shape == (len(inputs[0]), 10) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    lat = native.result["latency"]
    assert lat["runs"] == 5 and lat["warmup"] == 2 and len(lat["samples_ms"]) == 5
    assert lat["p50_ms"] > 0 and native.result["init_ms"] > 0 and native.result["first_ms"] > 0
    assert 0 < native.result["peak_rss_mb"] < python.result["peak_rss_mb"]


def test_inputs_read_a_sample_at_a_time_keep_each_samples_outputs(bundle, tmp_path):
    """The runner reads its input files a sample at a time (runner_common.h's InputFeed): sample k
    of a 5-sample run gives the same bytes as sample k run alone, and a file shorter than --samples
    says is one read error, before any run."""
    path, rec = pte(bundle, "int8")
    x = bundle.golden().inputs[0][:5]
    together = device("native").run_artifact(path, [x], rec["io"], warmup=3, runs=7)
    assert together.ok, together.error
    for k in range(5):
        alone = device("native").run_artifact(path, [x[k : k + 1]], rec["io"], warmup=0, runs=0)
        assert alone.ok and np.array_equal(alone.outputs[0], together.outputs[0][k : k + 1]), k
    runner = native_build.ensure_runner("host")
    x[:4].astype(np.float32).tofile(tmp_path / "short.bin")
    cmd = [str(runner.binary), str(path), "--samples", "5", "--input", f"{tmp_path / 'short.bin'}:float32",
           "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and report["ok"] is False and report["stage"] == "read", report
    assert "expected 5 samples of shape [1,1,8,8] float32 (1280 bytes), got 1024 bytes" in report["error"]
    assert not (tmp_path / "output_0.bin").exists()


def test_portable_int8_runs_natively_where_the_python_runtime_refuses(bundle, torch_digits, tmp_path):
    """int8 lowered with no delegate: quantize/dequantize and quantized ops on portable kernels.
    The Python runtime lacks the quantized kernels (error 0x14); the native runner links them."""
    import torch
    from executorch.exir import to_edge_transform_and_lower

    from edgeship.convert.torch_pte import example_tensors, prepare_program
    from edgeship.quantize.recipes import RECIPES as RECIPE_TABLE

    model = torch_digits.model
    examples = example_tensors(model)
    program = torch.export.export(model.obj.eval(), tuple(examples))
    quantized, _ = prepare_program(program, RECIPE_TABLE["int8"], examples, torch_digits.train.take(100))
    path = tmp_path / "digits.int8.portable.pte"
    path.write_bytes(to_edge_transform_and_lower(quantized).to_executorch().buffer)
    inputs = bundle.golden().inputs
    # ExecuTorch's own Python binding, as it comes, refuses it (edgeship's Python runner registers the
    # wheel's quantized kernels first, convert/xnnpack_passes.py's issue-11 fix, so it is not the witness)
    python = subprocess.run([sys.executable, "-c", "import sys, torch\nfrom executorch.extension.pybindings import _C\n"
                             "data = open(sys.argv[1], 'rb').read()\nprogram = _C._load_program_from_buffer(data)\n"
                             "program.load_method('forward')",
                             str(path)], capture_output=True, text=True, timeout=300)
    assert python.returncode != 0 and "0x14" in python.stderr.replace(":", ""), python.stderr[-500:]

    run = device("native").run_artifact(path, inputs, None, warmup=1, runs=3)
    assert run.ok, run.error
    assert run.result["delegate"]["active"] is False and "portable kernels only" in run.result["delegate"]["detail"]
    xnn_path, rec = pte(bundle, "int8")
    xnn = device("native").run_artifact(xnn_path, inputs, rec["io"], warmup=0, runs=1)
    agree = (run.outputs[0].argmax(1) == xnn.outputs[0].argmax(1)).mean()
    assert agree >= 0.95, agree


def test_validate_records_the_runtime_in_json_and_table(bundle, tmp_path):
    out = {}
    for runtime in ("native", "python"):
        path = tmp_path / f"{runtime}.json"
        proc = subprocess.run([sys.executable, "-m", "edgeship", "validate", str(bundle.root), "--runs", "3",
                               "--pte-runtime", runtime, "--json", str(path)], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[runtime] = (proc.stdout, json.loads(path.read_text()))
    text, data = out["native"]
    assert "runtimes: executorch-native" in text
    assert all(r["runtime"].startswith("executorch-native") and r["status"] == "pass" for r in data["artifacts"])
    text, data = out["python"]
    assert "executorch-native" not in text
    assert all(r["runtime"].startswith("executorch ") for r in data["artifacts"])


def test_a_crash_in_the_native_runner_is_contained(bundle, tmp_path):
    """The runner dies of SIGSEGV in the middle of its timed loop. No fuzzed file crashed it here
    (it verifies the program, and XNNPACK 1.5.1 rejects damaged payloads with 0x30: see the fuzz
    test), so the fault is planted from outside: the signal is sent to the real runner process,
    found through /proc. The artifact fails with the signal named, the next run is unaffected."""
    path, rec = pte(bundle, "fp32")
    planted = tmp_path / "crash-me.pte"  # a name to find the process by
    planted.write_bytes(path.read_bytes())
    sent = []

    watcher = segfault_when_running("pte_runner", planted, sent)
    inputs = [a[:1] for a in bundle.golden().inputs]
    run = device("native").run_artifact(planted, inputs, rec["io"], warmup=0, runs=10_000_000, timeout=120)
    watcher.join(5)
    assert sent, "the runner process was never seen"
    assert not run.ok and run.error.startswith("runtime crashed (killed by SIGSEGV)"), run.error
    assert "\n" not in run.error and run.result["platform"]["runner"] == "native"
    again = device("native").run_artifact(path, inputs, rec["io"], warmup=0, runs=1)
    assert again.ok


def test_a_hang_in_the_native_runner_is_cut_by_the_timeout(bundle, tmp_path):
    """A .pte that is a FIFO nobody writes: the runner blocks reading it, the timeout kills it."""
    _, rec = pte(bundle, "fp32")
    path = tmp_path / "stalled.pte"
    os.mkfifo(path)
    run = device("native").run_artifact(path, [a[:1] for a in bundle.golden().inputs], rec["io"], warmup=0, runs=1,
                                        timeout=5)
    # the runner's own words say the timeout cut it (not how long the test took: no timing thresholds)
    assert not run.ok and run.error.startswith("timed out after 5 s (the native runner"), run.error


def test_fuzzed_pte_files_end_in_a_result_or_a_clear_error(bundle, tmp_path):
    rng = random.Random(4321)
    seeds = [pte(bundle, r) for r in ("fp32", "int8")]
    donor = seeds[1][0].read_bytes()
    inputs = [a[:1] for a in bundle.golden().inputs]
    native = device("native")
    outcomes = Counter()
    for case in range(FUZZ_CASES):
        path, rec = seeds[case % len(seeds)]
        kind, data = mutate(path.read_bytes(), rng, donor)
        mutant = tmp_path / f"mutant{case}.pte"
        mutant.write_bytes(data)
        run = native.run_artifact(mutant, inputs, rec["io"], warmup=0, runs=1, timeout=30)
        if run.ok:
            assert run.outputs[0].shape == (1, 10)
            outcomes["ok"] += 1
        else:
            assert run.error and "\n" not in run.error and "timed out" not in run.error, run.error
            outcomes["crashed (contained)" if "crashed" in run.error else "clear error"] += 1
        mutant.unlink()
    print(f"native .pte fuzz: {dict(outcomes)}")
    assert sum(outcomes.values()) == FUZZ_CASES and outcomes["clear error"] > 0


def test_no_compiler_keeps_the_python_runtime_and_says_so_once(bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))  # nothing built yet
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ on it
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv(native_build.ENV_RUNTIME, raising=False)
    monkeypatch.setattr(native_build, "_said", set())
    path, rec = pte(bundle, "int8")
    inputs = [a[:4] for a in bundle.golden().inputs]
    runs = [LocalDevice().run_artifact(path, inputs, rec["io"], warmup=0, runs=1) for _ in range(2)]
    assert all(r.ok and r.result["runtime"].startswith("executorch ") for r in runs), [r.error for r in runs]
    err = capsys.readouterr().err
    assert err.count("no C++ compiler for the native ExecuTorch runner") == 1, err
    assert "Python runtime instead" in err
    assert not (tmp_path / "cache" / "native").exists() or not any((tmp_path / "cache" / "native").glob("*/pte_runner"))


def test_bench_profile_lists_ops_and_delegate_calls_slowest_first(bundle, tmp_path):
    from click.testing import CliRunner

    from edgeship.cli import cli
    from edgeship.errors import InputError
    from edgeship.runtime import native_profile

    path, rec = pte(bundle, "fp16")  # float16 casts on portable kernels around an XNNPACK delegate
    r = CliRunner().invoke(cli, ["bench", str(path), "--runs", "20", "--warmup", "2", "--profile"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "slowest first" in text and "ETDump" in text
    for event in ("Method::execute", "DELEGATE_CALL", "native_call__to_dim_order_copy.out"):
        assert event in r.output, event
    report = native_profile.profile(LocalDevice(), path, [a[:1] for a in bundle.golden().inputs], rec["io"],
                                    warmup=2, runs=20)
    totals = [row["total_ms"] for row in report["rows"]]
    assert totals == sorted(totals, reverse=True) and report["rows"][0]["name"] == "Method::execute"
    assert any(row["delegated"] for row in report["rows"])  # XNNPACK's own per-op events
    python_tflite = LocalDevice()  # a .tflite's profile comes from the native LiteRT runner (test_litert_native)
    python_tflite.tflite_runtime = "python"
    with pytest.raises(InputError, match="not available for .tflite"):
        native_profile.profile(python_tflite, tmp_path / "m.tflite", [], None)


def test_int8_io_quantized_by_the_program_constants(torch_digits, tmp_path):
    """--int8-io: the program takes and returns int8; the runner quantizes float inputs with the
    program's own forward_input0_scale/_zp and reports the output's, which edgeship dequantizes:
    the same floats as the Python runtime."""
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path / "io8"
    export(ExportRequest(source=torch_digits.source, out=out, targets=["pte"], recipes="int8", calib="digits:train",
                         golden_samples=32, int8_io=True))
    b = read_bundle(out)
    rec = b.artifacts[0]
    native = device("native").run_artifact(b.artifact_path(rec), b.golden().inputs, rec["io"], warmup=0, runs=1)
    python = device("python").run_artifact(b.artifact_path(rec), b.golden().inputs, rec["io"], warmup=0, runs=1)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["io"]["inputs"][0]["dtype"] == "int8" and native.result["io"]["inputs"][0]["quantization"]
    np.testing.assert_array_equal(native.outputs[0], python.outputs[0])
