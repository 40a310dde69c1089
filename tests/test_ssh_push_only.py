"""An ssh:// device with no Python at all, and no `devices setup`: edgeship pushes its own aarch64
runners and their libraries at first use, and .tflite, .pte and .onnx validate and bench there.

What is real: OpenSSH's sshd and client, the arm64 Debian userland (bookworm, from the emulated Pi's
cached root filesystem), edgeship's aarch64 LiteRT and ExecuTorch runners with the wheels' own
libraries, run by QEMU user mode. What stands in: the board (the sshd chroots each session into the
rootfs under QEMU, so the device reports itself emulated), and "no Python": a hard-linked view of
the rootfs made for this module, with every python3, pip and Python library directory left out of
the view (the shared rootfs, which other tests use, is read and never changed) and an empty /root,
so the device folder ~/.edgeship starts empty.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

from device_support import SSHTestServer, digits_bundle, emu_rootfs  # noqa: F401  (fixtures)

PYTHON_PATHS = re.compile(r"^(usr/bin/(python|pydoc|pip|py3)[^/]*|usr/(local/)?lib/python3[^/]*)$")


def python_free_view(rootfs: Path, dest: Path) -> Path:
    """DEST: ROOTFS hard-linked file by file (symlinks re-made, directories new), leaving out
    python3, pip and Python's library directories, with an empty /root. Nothing in ROOTFS changes;
    the view's new files (~/.edgeship) are its own."""
    for dirpath, dirnames, filenames in os.walk(rootfs):
        src_dir = Path(dirpath)
        rel_dir = src_dir.relative_to(rootfs)
        out_dir = dest / rel_dir
        out_dir.mkdir(mode=src_dir.stat().st_mode & 0o7777, exist_ok=True)
        if rel_dir == Path("root"):
            dirnames[:] = []
            continue
        keep = []
        for name in dirnames + filenames:
            rel = (rel_dir / name).as_posix()
            if PYTHON_PATHS.match(rel):
                continue
            src = src_dir / name
            if src.is_symlink():
                os.symlink(os.readlink(src), out_dir / name)
            elif src.is_dir():
                keep.append(name)
            else:
                os.link(src, out_dir / name)
        dirnames[:] = [d for d in dirnames if d in keep]
    return dest


@pytest.fixture(scope="module")
def device(emu_rootfs, tmp_path_factory):
    from edgeship.runtime.rootfs import ensure_binfmt

    ensure_binfmt()
    # the view is hard-linked, so it lives on the rootfs's file system (tmp may be another one)
    view = emu_rootfs.parent / f".test-no-python-{os.getpid()}"
    shutil.rmtree(view, ignore_errors=True)
    t0 = time.monotonic()
    python_free_view(emu_rootfs, view)
    print(f"\npython-free view of the rootfs in {time.monotonic() - t0:.1f} s")
    server = SSHTestServer(view, tmp_path_factory.mktemp("sshd-no-python"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(view, ignore_errors=True)


@pytest.fixture(scope="module")
def env(device):
    return {"EDGESHIP_SSH_CONFIG": str(device.client_config("nopython"))}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A real .onnx (relu(x @ W), x (1, 8) -> (1, 4)), built with onnx's helpers: what matters here is
    that a .onnx runs on a board without Python (the native ONNX Runtime runner)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    path = tmp_path_factory.mktemp("push-only-onnx") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_the_device_has_no_python(device):
    view = device.rootfs
    assert not (view / "usr/bin/python3").exists() and not list(view.glob("usr/lib/python3*"))
    assert not list(view.glob("usr/local/lib/python3*")) and (device.rootfs.parent / view.name).is_dir()
    assert (view / "usr/bin/sh").exists()  # the shell, coreutils and libstdc++ are there


def test_tflite_pte_and_onnx_run_with_no_python_and_match_the_host(device, env, digits_bundle, tiny_onnx,
                                                                    monkeypatch):
    """First use pushes the runners into the empty ~/.edgeship; each .tflite and .pte (fp32, int8)
    gives the host's outputs: fp32 within 1e-4, int8 top-1 agreeing with the host's on >= 97%; the
    .onnx gives the host's within 1e-5."""
    from edgeship.bundle import read_bundle
    from edgeship.runtime.device import open_device
    from edgeship.runtime.ssh import SSHDevice

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    home = device.rootfs / "root/.edgeship"
    shutil.rmtree(home, ignore_errors=True)  # this view's own device folder (new files only): a first use
    bundle = read_bundle(digits_bundle)
    ssh, local = SSHDevice(device.uri), open_device("local")
    inputs = [x[:64] for x in bundle.golden().inputs]
    t0 = time.monotonic()
    for rec in bundle.artifacts:
        path = bundle.artifact_path(rec)
        far = ssh.run_artifact(path, inputs, rec["io"], warmup=1, runs=3, timeout=120)
        print(f"{path.name} on the device: {time.monotonic() - t0:.1f} s (the first of each format pushes its runner)")
        t0 = time.monotonic()
        near = local.run_artifact(path, inputs, rec["io"], warmup=1, runs=3)
        assert far.ok and near.ok, (path.name, far.error, near.error)
        kind = "litert-native" if path.suffix == ".tflite" else "executorch-native"
        assert far.result["runtime"].startswith(kind) and far.result["platform"]["machine"] == "aarch64"
        a, b = near.outputs[0], far.outputs[0]
        assert a.shape == b.shape
        if rec["recipe"] == "int8":
            differ = int((a != b).sum())
            print(f"{path.name}: {differ} of {a.size} int8 outputs differ from the host's")
            assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97, path.name
        else:
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-3, err_msg=path.name)
    x = np.linspace(-2, 2, 5 * 8, dtype=np.float32).reshape(5, 8)
    far = ssh.run_artifact(tiny_onnx, [x], None, warmup=1, runs=3, timeout=120)
    near = local.run_artifact(tiny_onnx, [x], None, warmup=1, runs=3)
    assert far.ok and near.ok, (far.error, near.error)
    assert far.result["runtime"].startswith("onnxruntime-native") and far.result["platform"]["machine"] == "aarch64"
    np.testing.assert_allclose(far.outputs[0], near.outputs[0], atol=1e-5, rtol=0)
    pushed = sorted(p.relative_to(home).as_posix() for p in home.glob("native-*/*_runner"))
    assert len(pushed) == 3 and {p.rsplit("/", 1)[1] for p in pushed} == {"litert_runner", "pte_runner", "ort_runner"}
    assert (home / "venv").exists() is False and not list(home.glob("agent-*"))  # no Python was needed


def test_validate_bench_and_doctor_with_no_python(device, env, digits_bundle, tiny_onnx, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["validate", str(digits_bundle), "--device", device.uri, "--runs", "3",
                                 "--json", str(out)], env=env)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["context"]["emulated"] is True and len(data["artifacts"]) == 4
    for rec in data["artifacts"]:
        assert rec["status"] == "pass", rec
        assert rec["runtime"].split()[0] in ("litert-native", "executorch-native")
        assert rec["platform"]["machine"] == "aarch64" and rec["accuracy"]["top1_agreement"] >= 97.0

    out = tmp_path / "onnx.json"  # .onnx: the native ONNX Runtime runner, no Python either
    r = CliRunner().invoke(cli, ["validate", str(tiny_onnx), "--device", device.uri, "--json", str(out)], env=env)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    rec = json.loads(out.read_text())["artifacts"][0]
    assert rec["status"] != "error" and not rec.get("error"), rec
    assert rec["runtime"].startswith("onnxruntime-native") and rec["platform"]["machine"] == "aarch64", rec

    tfl = "digits.int8.tflite"
    r = CliRunner().invoke(cli, ["bench", str(digits_bundle / tfl), "--device", device.uri, "--runs", "3",
                                 "--warmup", "1"], env=env)
    assert r.exit_code == 0 and "litert-native" in r.output, r.output
    # setup on a board with no python3 has nothing to build a venv with: it says so, and exits 0
    r = CliRunner().invoke(cli, ["devices", "setup", device.uri, "--json"], env=env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])  # the doctor's report, with setup's words
    assert report["setup"].startswith("native runners only: no python3 on the device")
    assert report["python3"] is False and report["venv"] is False and report["machine"] == "aarch64"
    assert report["emulated"] is True and report["os"].startswith("Debian GNU/Linux 12")
    assert report["litert_native"]["available"] and report["executorch_native"]["available"]
    assert report["litert_native"]["cached_before"] and report["executorch_native"]["cached_before"]
    assert report["ort_native"]["available"] and report["ort_native"]["cached_before"]
    fmt = report["formats"]
    assert fmt[".tflite"]["runs"] and fmt[".pte"]["runs"] and fmt[".onnx"]["runs"]
    assert fmt[".onnx"]["how"].startswith("native ONNX Runtime runner")
    r = CliRunner().invoke(cli, ["devices", "doctor", device.uri], env=env)
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 0, r.output
    assert "python3 no (not needed for .tflite, .pte and .onnx)" in said and "runs .onnx yes: native" in said, r.output
    assert "runs .tflite yes: native LiteRT runner" in said and "LiteRT: cached in ~/.edgeship/native-" in said
