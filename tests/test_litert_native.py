"""edgeship's native LiteRT runner (runtime/native/litert_runner.cpp, libLiteRt.so's C API): every
recipe's .tflite gives the Python interpreter's outputs bit for bit, inputs follow the manifest's
names, a crash and a hang are contained, 300 fuzzed .tflite end in a result or a clear error, bench
--profile names the ops, --tflite-runtime python keeps the Python interpreter, and emu:rpi4 runs the
aarch64 build under QEMU. Real conversions of the Keras digits CNN; the real runner, built with g++."""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter

import numpy as np
import pytest
from bench_modules import bench_module

from edgeship.convert import ConvertOptions
from edgeship.quantize import get_recipe
from edgeship.runtime import native_build
from edgeship.runtime.local import LocalDevice

from device_support import segfault_when_running

mutate = bench_module("mutations").mutate

# (name, recipe, integer I/O)
RECIPES = (("fp32", "fp32", False), ("fp16", "fp16", False), ("dynamic-int8", "dynamic-int8", False),
           ("int8", "int8", False), ("int8-io", "int8", True), ("int16x8", "int16x8", False))
FUZZ_CASES = 300


def device(runtime: str, cls=LocalDevice, *args) -> LocalDevice:
    d = cls(*args)
    d.tflite_runtime = runtime
    return d


@pytest.fixture(scope="module")
def models(keras_digits, tmp_path_factory):
    """name -> (.tflite, its manifest signature as export writes it: edgeship.inspect.artifact_io)."""
    from edgeship.convert.keras_tflite import convert
    from edgeship.inspect import artifact_io

    d = tmp_path_factory.mktemp("litert-native")
    out = {}
    for name, recipe, int8_io in RECIPES:
        path = d / f"digits.{name}.tflite"
        convert(keras_digits.model, get_recipe(recipe), keras_digits.train.take(100), path,
                ConvertOptions(int8_io=int8_io))
        out[name] = (path, artifact_io(path, keras_digits.model.io))
    return out


@pytest.fixture(scope="module")
def feeds(keras_digits):
    x = keras_digits.test.batch(0, 48)
    return [np.asarray(a, np.float32) for a in x]


@pytest.mark.parametrize("name", [r[0] for r in RECIPES])
def test_outputs_equal_the_python_interpreter(models, feeds, name):
    path, sig = models[name]
    native = device("native").run_artifact(path, feeds, sig, warmup=1, runs=3)
    python = device("python").run_artifact(path, feeds, sig, warmup=1, runs=3)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["runtime"] == f"litert-native {native_build.litert_version()}"
    assert python.result["runtime"].startswith("ai-edge-litert ")
    assert native.result["platform"]["runner"] == "native" and native.result["platform"]["machine"] == "x86_64"
    (a,), (b,) = native.outputs, python.outputs
    assert a.shape == b.shape == (len(feeds[0]), 10) and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    io = native.result["io"]
    if name == "int8-io":  # quantized by the file's own parameters, dequantized the same way as Python
        assert io["inputs"][0]["dtype"] == "int8" and io["inputs"][0]["quantization"]["scale"] > 0
        assert io["outputs"][0]["dtype"] == "int8"
    else:
        assert io["inputs"][0]["dtype"] == "float32"
    lat = native.result["latency"]
    assert lat["runs"] == 3 and lat["warmup"] == 1 and lat["p50_ms"] > 0
    assert native.result["init_ms"] > 0 and native.result["first_ms"] > 0
    assert 0 < native.result["peak_rss_mb"] < python.result["peak_rss_mb"]
    # which ops XNNPACK took, from the run (LiteRT's own word, or its profiler's operator events),
    # against the Python runner's count from the interpreter's execution plan
    n, p = native.result["delegate"], python.result["delegate"]
    assert n["name"] == "XNNPACK" and n["active"] is p["active"] and "delegated to XNNPACK" in n["detail"]
    assert (n["delegated_ops"], n["total_ops"]) == (p["delegated_ops"], p["total_ops"]), (n, p)


def test_inputs_follow_the_signatures_names(tmp_path):
    """Two inputs listed in the other order than the file's: tensor names, then signature keys."""
    import keras

    from edgeship.convert.keras_tflite import convert
    from edgeship.model import IOSpec, Model, TensorSpec

    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    km = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    io = IOSpec([TensorSpec("zeta", (1, 4)), TensorSpec("alpha", (1, 3))], [TensorSpec("out", (1, 2))])
    path = tmp_path / "two.tflite"
    convert(Model("two", "keras", "keras", "two", "two", km, io, None), get_recipe("fp32"), None, path,
            ConvertOptions())
    x = [np.arange(8, dtype=np.float32).reshape(2, 4), np.arange(6, dtype=np.float32).reshape(2, 3) - 5]
    want = np.asarray(km(x))
    entries = [{"name": "zeta", "artifact_name": "serving_default_zeta:0"},
               {"name": "alpha", "artifact_name": "serving_default_alpha:0"}]
    for sig, feeds in ((None, x), ({"inputs": entries[::-1], "outputs": [{"name": "out"}]}, x[::-1]),
                       ({"inputs": [{"name": "alpha"}, {"name": "zeta"}]}, x[::-1])):
        native = device("native").run_artifact(path, feeds, sig, warmup=0, runs=1)
        python = device("python").run_artifact(path, feeds, sig, warmup=0, runs=1)
        assert native.ok and python.ok, (native.error, python.error)
        np.testing.assert_allclose(native.outputs[0], want, atol=1e-5)
        np.testing.assert_array_equal(native.outputs[0], python.outputs[0])


def test_a_damaged_file_is_a_clear_error(models, feeds, tmp_path):
    """The runner loads from a buffer so LiteRT's flatbuffer verifier runs: before it loaded by file
    name (no verifier), and 45 of 100 fuzzed files killed it with SIGSEGV."""
    path, sig = models["fp32"]
    data = bytearray(path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)
    bad = tmp_path / "zeroed.tflite"
    bad.write_bytes(bytes(data[:len(data) // 2]))
    run = device("native").run_artifact(bad, [a[:1] for a in feeds], sig, warmup=0, runs=1)
    assert not run.ok and run.error.startswith("load: cannot load") and "LiteRT status" in run.error, run.error
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    run = device("native").run_artifact(empty, [a[:1] for a in feeds], sig, warmup=0, runs=1)
    assert not run.ok and "empty (0 bytes)" in run.error


def test_a_crash_in_the_native_runner_is_contained(models, feeds, tmp_path):
    """SIGSEGV delivered to the real runner in its timed loop (no fuzzed file crashes it since it
    verifies the flatbuffer): the artifact fails with the signal named, the next run is unaffected."""
    path, sig = models["fp32"]
    planted = tmp_path / "crash-me.tflite"
    planted.write_bytes(path.read_bytes())
    sent = []

    watcher = segfault_when_running("litert_runner", planted, sent)
    one = [a[:1] for a in feeds]
    run = device("native").run_artifact(planted, one, sig, warmup=0, runs=100_000_000, timeout=120)
    watcher.join(5)
    assert sent, "the runner process was never seen"
    assert not run.ok and run.error.startswith("runtime crashed (killed by SIGSEGV)"), run.error
    assert "\n" not in run.error and run.result["platform"]["runner"] == "native"
    assert device("native").run_artifact(path, one, sig, warmup=0, runs=1).ok


def test_a_hang_is_cut_by_the_timeout(models, feeds, tmp_path):
    """A .tflite that is a FIFO nobody writes: the runner blocks opening it, the timeout kills it."""
    _, sig = models["fp32"]
    path = tmp_path / "stalled.tflite"
    os.mkfifo(path)
    run = device("native").run_artifact(path, [a[:1] for a in feeds], sig, warmup=0, runs=1, timeout=3)
    assert not run.ok and run.error.startswith("timed out after 3 s (the native runner"), run.error


def test_fuzzed_tflite_files_end_in_a_result_or_a_clear_error(models, feeds, tmp_path):
    rng = random.Random(4321)
    seeds = [models["fp32"], models["int8"]]
    donor = seeds[1][0].read_bytes()
    one = [a[:1] for a in feeds]
    native = device("native")
    outcomes = Counter()
    for case in range(FUZZ_CASES):
        path, sig = seeds[case % len(seeds)]
        _, data = mutate(path.read_bytes(), rng, donor)
        mutant = tmp_path / f"mutant{case}.tflite"
        mutant.write_bytes(data)
        run = native.run_artifact(mutant, one, sig, warmup=0, runs=1, timeout=30)
        if run.ok:
            assert run.outputs[0].shape == (1, 10)
            outcomes["ok"] += 1
        else:
            assert run.error and "\n" not in run.error and "timed out" not in run.error, run.error
            outcomes["crashed (contained)" if "crashed" in run.error else "clear error"] += 1
        mutant.unlink()
    print(f"native .tflite fuzz: {dict(outcomes)}")
    assert sum(outcomes.values()) == FUZZ_CASES and outcomes["clear error"] > 0 and outcomes["ok"] > 0
    # the flatbuffer verifier catches most of these seeds' mutants (0 of 300 crashed in one run, 1 in CI's:
    # it checks structure, not every index a kernel reads); a crash that gets past it stays in its child
    assert outcomes["crashed (contained)"] <= FUZZ_CASES // 20, dict(outcomes)


def test_bench_profile_names_the_ops(models):
    from click.testing import CliRunner

    from edgeship.cli import cli

    path, _ = models["dynamic-int8"]  # XNNPACK ops and one op left to LiteRT's own kernels
    r = CliRunner().invoke(cli, ["bench", str(path), "--runs", "10", "--warmup", "1", "--profile"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "slowest first" in text and "LiteRT profiler" in text and "litert-native" in text
    assert "Invoke" in text and "Fully Connected" in text and "Convolution" in text, r.output
    assert " yes " in text  # ops XNNPACK ran inside its delegate
    python = CliRunner().invoke(cli, ["bench", str(path), "--runs", "3", "--warmup", "0", "--profile",
                                      "--tflite-runtime", "python"])
    assert python.exit_code == 0, python.output
    assert "ai-edge-litert" in python.output and "no op profiler" in " ".join(python.output.split())


def test_tflite_runtime_python_does_not_outlive_its_command(models, monkeypatch):
    from edgeship.context import runtime_choices

    monkeypatch.delenv(native_build.ENV_TFLITE_RUNTIME, raising=False)
    path, sig = models["fp32"]
    feeds = [np.zeros(sig["inputs"][0]["shape"], np.float32)]
    with runtime_choices(tflite_runtime="python"):
        assert LocalDevice().run_artifact(path, feeds, sig, warmup=0, runs=1).result["runtime"].startswith("ai-edge")
    assert LocalDevice().run_artifact(path, feeds, sig, warmup=0, runs=1).result["runtime"].startswith("litert-native")
    monkeypatch.setenv(native_build.ENV_TFLITE_RUNTIME, "python")
    assert native_build.tflite_runtime() == "python"


@pytest.mark.skipif(shutil.which(native_build.CROSS_CXX) is None or shutil.which("qemu-aarch64-static") is None,
                    reason="needs g++-aarch64-linux-gnu and qemu-user-static")
def test_emulated_pi_runs_the_aarch64_runner(models, feeds):
    from edgeship.runtime import native_profile
    from edgeship.runtime.emulated import EmulatedDevice
    from edgeship.runtime.rootfs import cached_rootfs

    if cached_rootfs() is None:
        pytest.skip("no emulated arm64 root filesystem (edgeship devices setup emu:rpi4)")
    path, sig = models["int8"]
    few = [a[:8] for a in feeds]
    native = device("native", EmulatedDevice, "emu:rpi4").run_artifact(path, few, sig, warmup=0, runs=1)
    python = device("python", EmulatedDevice, "emu:rpi4").run_artifact(path, few, sig, warmup=0, runs=1)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["platform"]["machine"] == "aarch64" and native.result["runtime"].startswith("litert-native")
    assert python.result["runtime"].startswith("ai-edge-litert") and python.result["platform"]["machine"] == "aarch64"
    np.testing.assert_array_equal(native.outputs[0], python.outputs[0])
    report = native_profile.profile(EmulatedDevice("emu:rpi4"), path, [a[:1] for a in feeds], sig, warmup=0, runs=2)
    assert report["emulated"] is True and report["runtime"].startswith("litert-native")
    assert any(r["delegated"] and r["name"].startswith("Convolution") for r in report["rows"]), report["rows"]


def test_no_compiler_keeps_the_python_interpreter_and_says_so_once(models, feeds, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))  # nothing built yet
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ on it
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv(native_build.ENV_TFLITE_RUNTIME, raising=False)
    monkeypatch.setattr(native_build, "_said", set())
    path, sig = models["int8"]
    runs = [LocalDevice().run_artifact(path, [a[:2] for a in feeds], sig, warmup=0, runs=1) for _ in range(2)]
    assert all(r.ok and r.result["runtime"].startswith("ai-edge-litert ") for r in runs), [r.error for r in runs]
    err = capsys.readouterr().err
    assert err.count("no C++ compiler for the native LiteRT runner") == 1, err
    assert "Python interpreter instead" in err


def test_doctor_shows_the_native_litert_runner():
    from click.testing import CliRunner

    from edgeship.cli import cli

    r = CliRunner().invoke(cli, ["devices", "doctor", "local"])
    text = " ".join(r.output.split())
    assert "LiteRT (native)" in text and f"litert-native {native_build.litert_version()}" in text, r.output
    assert "XNNPACK active: CpuAccelerator registered" in text, r.output
