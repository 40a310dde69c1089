"""edgeship's native ONNX Runtime runner (runtime/native/ort_runner.cpp, libonnxruntime's C API from the
onnxruntime wheel): the digits CNN's fp32, int8 and int8-with-integer-I/O .onnx give the Python
onnxruntime's outputs, inputs follow the manifest's names, open dimensions take the sample's shape,
a damaged or empty file is one clear line, a crash and a hang are contained, and the aarch64 build runs
on emu:rpi4 under QEMU. Real conversions of the torch digits CNN; the real runner, built with g++."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert import ConvertOptions
from edgeship.quantize import get_recipe
from edgeship.runtime import native_build
from edgeship.runtime.local import LocalDevice

from device_support import segfault_when_running

# (name, recipe): edgeship's int8 .onnx are QDQ graphs with float I/O (integer I/O: test_integer_io_...)
RECIPES = (("fp32", "fp32"), ("int8", "int8"))


def device(runtime: str, cls=LocalDevice, *args) -> LocalDevice:
    d = cls(*args)
    d.onnx_runtime = runtime
    return d


@pytest.fixture(scope="module")
def models(torch_digits, tmp_path_factory):
    """name -> (.onnx, its manifest signature as export writes it: edgeship.inspect.artifact_io)."""
    from edgeship.convert.torch_onnx import convert
    from edgeship.inspect import artifact_io

    d = tmp_path_factory.mktemp("ort-native")
    out = {}
    for name, recipe in RECIPES:
        path = d / f"digits.{name}.onnx"
        convert(torch_digits.model, get_recipe(recipe), torch_digits.train.take(100), path, ConvertOptions())
        out[name] = (path, artifact_io(path, torch_digits.model.io))
    return out


@pytest.fixture(scope="module")
def feeds(torch_digits):
    x = torch_digits.test.batch(0, 48)
    return [np.asarray(a, np.float32) for a in x]


@pytest.mark.parametrize("name", [r[0] for r in RECIPES])
def test_outputs_equal_python_onnxruntime(models, feeds, name):
    path, sig = models[name]
    native = device("native").run_artifact(path, feeds, sig, warmup=1, runs=3)
    python = device("python").run_artifact(path, feeds, sig, warmup=1, runs=3)
    assert native.ok and python.ok, (native.error, python.error)
    assert native.result["runtime"] == f"onnxruntime-native {native_build.ort_version()}"
    assert python.result["runtime"].startswith("onnxruntime ")
    assert native.result["platform"]["runner"] == "native" and native.result["platform"]["machine"] == "x86_64"
    assert native.result["latency"]["p50_ms"] > 0 and native.result["peak_rss_mb"] > 0
    (a,), (b,) = native.outputs, python.outputs
    assert a.shape == b.shape == (len(feeds[0]), 10) and a.dtype == b.dtype == np.float32
    assert native.result["io"]["inputs"][0]["dtype"] == "float32"
    if name == "fp32":
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    else:  # the same integer kernels on the same quantized graph: exact
        np.testing.assert_array_equal(a, b)


def test_integer_io_is_quantized_and_cast_like_python(tmp_path):
    """int8 in and out with the signature's (scale, zero point), uint8 in -> int32 out, cast: the
    float feed is quantized (half to even, clipped) and the int8 output dequantized as Python does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["f"]),
         helper.make_node("Relu", ["f"], ["r"]),
         helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["q_out"]),
         helper.make_node("Cast", ["u"], ["u32"], to=TensorProto.INT32)],
        "ints", [helper.make_tensor_value_info("q", TensorProto.INT8, [1, 16]),
                 helper.make_tensor_value_info("u", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("q_out", TensorProto.INT8, [1, 16]),
         helper.make_tensor_value_info("u32", TensorProto.INT32, [1, 4])],
        [numpy_helper.from_array(np.array(0.05, np.float32), "s_in"),
         numpy_helper.from_array(np.array(3, np.int8), "z_in"),
         numpy_helper.from_array(np.array(0.02, np.float32), "s_out"),
         numpy_helper.from_array(np.array(-5, np.int8), "z_out")])
    path = tmp_path / "ints.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    sig = {"inputs": [{"name": "q", "dtype": "int8", "quantization": {"scale": 0.05, "zero_point": 3}},
                      {"name": "u", "dtype": "uint8"}],
           "outputs": [{"name": "q_out", "dtype": "int8", "quantization": {"scale": 0.02, "zero_point": -5}},
                       {"name": "u32", "dtype": "int32"}]}
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 16)) * 4).astype(np.float32)  # some beyond int8's range: clipped
    x[0, :4] = [0.025, 0.075, -0.025, 0.125]  # halves: to even
    u = rng.integers(0, 256, size=(6, 4)).astype(np.uint8)
    native = device("native").run_artifact(path, [x, u], sig, warmup=0, runs=2)
    python = device("python").run_artifact(path, [x, u], sig, warmup=0, runs=2)
    assert native.ok and python.ok, (native.error, python.error)
    io = native.result["io"]
    assert [i["dtype"] for i in io["inputs"]] == ["int8", "uint8"] and io["inputs"][0]["quantization"]["scale"] == 0.05
    assert [o["dtype"] for o in io["outputs"]] == ["int8", "int32"]
    for a, b in zip(native.outputs, python.outputs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(native.outputs[1], u.astype(np.int32))


def _two_input_model(path: Path) -> None:
    """out_a = x - y (float32), out_b = ids * 2 (int64, open batch): two inputs whose names the
    manifest lists in the other order, and an integer input of open shape."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "y"], ["out_a"]),
         helper.make_node("Add", ["ids", "ids"], ["out_b"])],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
                helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
                helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("out_a", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("out_b", TensorProto.INT64, ["batch", 5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_inputs_follow_the_signatures_names_and_open_shapes(tmp_path):
    path = tmp_path / "two.onnx"
    _two_input_model(path)
    sig = {"inputs": [{"name": "ids", "artifact_name": "ids", "dtype": "int64"},
                      {"name": "y", "artifact_name": "y", "dtype": "float32"},
                      {"name": "x", "artifact_name": "x", "dtype": "float32"}],
           "outputs": [{"name": "out_b", "artifact_name": "out_b"}, {"name": "out_a", "artifact_name": "out_a"}]}
    rng = np.random.default_rng(0)
    ids = rng.integers(-1000, 1000, size=(4, 5)).astype(np.int64)
    y, x = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    native = device("native").run_artifact(path, [ids, y, x], sig, warmup=0, runs=2)
    python = device("python").run_artifact(path, [ids, y, x], sig, warmup=0, runs=2)
    assert native.ok and python.ok, (native.error, python.error)
    assert [i["name"] for i in native.result["io"]["inputs"]] == ["ids", "y", "x"]
    assert native.result["io"]["inputs"][0]["shape"] == [1, 5]  # the open batch: the sample's own
    np.testing.assert_array_equal(native.outputs[0], ids * 2)
    np.testing.assert_array_equal(native.outputs[1], x - y)
    for a, b in zip(native.outputs, python.outputs):
        np.testing.assert_array_equal(a, b)


def test_a_damaged_or_empty_file_is_one_clear_line(models, feeds, tmp_path):
    path, sig = models["fp32"]
    data = bytearray(path.read_bytes())
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(bytes(data[:len(data) // 3]))
    run = device("native").run_artifact(bad, [a[:1] for a in feeds], sig, warmup=0, runs=1)
    assert not run.ok and run.error.startswith("load: cannot load") and "onnxruntime" in run.error, run.error
    assert "\n" not in run.error and run.result["platform"]["runner"] == "native"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    run = device("native").run_artifact(empty, [a[:1] for a in feeds], sig, warmup=0, runs=1)
    assert not run.ok and "empty (0 bytes)" in run.error and "\n" not in run.error


def test_a_crash_in_the_native_runner_is_contained(models, feeds, tmp_path):
    """SIGSEGV delivered to the real runner in its timed loop: the artifact fails with the signal
    named, in one line, and the next run is unaffected."""
    path, sig = models["fp32"]
    planted = tmp_path / "crash-me.onnx"
    planted.write_bytes(path.read_bytes())
    sent = []

    watcher = segfault_when_running("ort_runner", planted, sent)
    one = [a[:1] for a in feeds]
    run = device("native").run_artifact(planted, one, sig, warmup=0, runs=100_000_000, timeout=120)
    watcher.join(5)
    assert sent, "the runner process was never seen"
    assert not run.ok and run.error.startswith("runtime crashed (killed by SIGSEGV)"), run.error
    assert "\n" not in run.error and run.result["platform"]["runner"] == "native"
    assert device("native").run_artifact(path, one, sig, warmup=0, runs=1).ok


def test_a_hang_is_cut_by_the_timeout(models, feeds, tmp_path):
    """A .onnx that is a FIFO nobody writes: the runner blocks opening it, the timeout kills it."""
    _, sig = models["fp32"]
    path = tmp_path / "stalled.onnx"
    os.mkfifo(path)
    run = device("native").run_artifact(path, [a[:1] for a in feeds], sig, warmup=0, runs=1, timeout=3)
    assert not run.ok and run.error.startswith("timed out after 3 s (the native runner"), run.error


def test_onnx_runtime_python_keeps_the_python_package(models, feeds, monkeypatch):
    path, sig = models["int8"]
    monkeypatch.setenv(native_build.ENV_ONNX_RUNTIME, "python")
    run = LocalDevice().run_artifact(path, [a[:2] for a in feeds], sig, warmup=0, runs=1)
    assert run.ok and run.result["runtime"].startswith("onnxruntime "), run.error
    monkeypatch.setenv(native_build.ENV_ONNX_RUNTIME, "nativ")
    from edgeship.errors import InputError

    with pytest.raises(InputError, match="unknown .onnx runtime 'nativ'"):
        LocalDevice().run_artifact(path, [a[:2] for a in feeds], sig, warmup=0, runs=1)


def test_no_compiler_keeps_python_onnxruntime_and_says_so_once(models, feeds, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))  # nothing built yet
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ on it
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv(native_build.ENV_ONNX_RUNTIME, raising=False)
    monkeypatch.setattr(native_build, "_said", set())
    path, sig = models["int8"]
    runs = [LocalDevice().run_artifact(path, [a[:2] for a in feeds], sig, warmup=0, runs=1) for _ in range(2)]
    assert all(r.ok and r.result["runtime"].startswith("onnxruntime ") for r in runs), [r.error for r in runs]
    err = capsys.readouterr().err
    assert err.count("no C++ compiler for the native ONNX Runtime runner") == 1, err
    assert ".onnx runs with onnxruntime's Python package instead" in err


def test_emulated_pi_runs_the_aarch64_runner(models, feeds):
    from edgeship.runtime.emulated import EmulatedDevice
    from edgeship.runtime.rootfs import cached_python_side, cached_rootfs

    if cached_rootfs() is None:
        pytest.skip("no emulated arm64 root filesystem (edgeship devices setup emu:rpi4)")
    few = [a[:8] for a in feeds]
    for name in ("fp32", "int8"):
        path, sig = models[name]
        native = device("native", EmulatedDevice, "emu:rpi4").run_artifact(path, few, sig, warmup=0, runs=1)
        assert native.ok, native.error
        assert native.result["platform"]["machine"] == "aarch64"
        assert native.result["runtime"] == f"onnxruntime-native {native_build.ort_version()}"
        host = device("python").run_artifact(path, few, sig, warmup=0, runs=1)
        assert host.ok, host.error
        # another CPU's kernels: float sums in another order; the int8 graph's argmax is the same
        np.testing.assert_allclose(native.outputs[0], host.outputs[0], rtol=0, atol=1e-3)
        assert (native.outputs[0].argmax(1) == host.outputs[0].argmax(1)).all()
        if cached_python_side() is not None:  # the guest's own Python onnxruntime, when installed
            python = device("python", EmulatedDevice, "emu:rpi4").run_artifact(path, few, sig, warmup=0, runs=1)
            assert python.ok and python.result["platform"]["machine"] == "aarch64", python.error
            if name == "int8":
                np.testing.assert_array_equal(native.outputs[0], python.outputs[0])
            else:
                np.testing.assert_allclose(native.outputs[0], python.outputs[0], rtol=0, atol=1e-5)


def test_doctor_shows_the_native_onnx_runner():
    from edgeship.runtime.native import native_probe_for

    n = native_probe_for(LocalDevice(), "ort")
    assert n["available"] and n["runtime"] == f"onnxruntime-native {native_build.ort_version()}", n
    assert n["cpu"]["active"] is True and n["machine"] == "x86_64"
