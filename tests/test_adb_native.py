"""adb with no --runner: edgeship's own aarch64 runners (pte_runner, litert_runner, ort_runner) are
pushed with a glibc of their own and started through the pushed loader.

Real here: the aarch64 runners native_build.py cross-compiles, the ExecuTorch / LiteRT / ONNX
Runtime aarch64 libraries they link, the cross toolchain's glibc that gets pushed, arm64 execution
under QEMU (qemu-aarch64-static), and Debian's `adb` client speaking the adb protocol.
Standing in: the adb server (tests/adb_test_server.py), and the phone, which is the emulated Pi's
Debian arm64 root filesystem, not Android: no bionic, no seccomp, no SELinux, no Android
exec policy on /data/local/tmp. What these tests prove is that nothing of the device's own libc
is needed, not that Android hardware runs the runners.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.runtime import adb_native, native_build

from adb_test_server import AdbTestServer
from device_support import REPO, emu_rootfs, require_tool  # noqa: F401  (fixtures)

FORMATS = {".tflite": "litert-native", ".pte": "executorch-native", ".onnx": "onnxruntime-native"}
LOADER = "/lib/ld-linux-aarch64.so.1 --library-path /data/local/tmp/edgeship/native-"


def run_cli(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The torch digits CNN as .tflite, .pte and .onnx (.onnx while native_build has the ort
    kind), fp32 and int8, 40 golden samples with the host's outputs."""
    to = "tflite,pte" + (",onnx" if "ort" in native_build.KINDS else "")
    out = tmp_path_factory.mktemp("adbnative") / "digits"
    r = run_cli("-q", "export", f"{REPO / 'examples' / 'torch_digits.py'}:build", "--to", to, "--quant",
                "fp32,int8", "--calib", "digits:train", "--calib-samples", "100", "--eval", "digits:test",
                "--golden-samples", "40", "--out", out, "--name", "digits")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def adb_server(emu_rootfs, tmp_path):
    from edgeship.runtime.rootfs import ensure_binfmt

    require_tool("adb", "adb")
    ensure_binfmt()  # the server's shell execs arm64 programs through binfmt_misc
    servers = []

    def start(**kw) -> AdbTestServer:
        s = AdbTestServer(emu_rootfs, tmp_path / f"data{len(servers)}", **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def adb(server: AdbTestServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["adb", *args], check=False, capture_output=True, text=True, timeout=300, env=server.env())


def test_validate_every_format_over_adb_with_no_runner(adb_server, bundle, monkeypatch):
    """No runner given: every artifact of the bundle passes on the "phone" through edgeship's own
    runner, started as `<dir>/lib/ld-linux-aarch64.so.1 --library-path <dir>/lib <dir>/<runner>`;
    accuracy measured, the delegate record the runner's own report. A second validate pushes no
    runner, library or model file (only each run's inputs). Through edgeship.api.validate; the CLI's
    path is test_the_cli_runs_adb_with_no_runner."""
    from edgeship.api import validate

    server = adb_server()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("EDGESHIP_ADB_RUNNER", raising=False)
    t0 = time.monotonic()
    arts = validate(bundle, device="adb", runs=3).records
    first_s = time.monotonic() - t0
    want = {s for s in FORMATS if s != ".onnx" or "ort" in native_build.KINDS}
    assert {Path(a["artifact"]).suffix for a in arts} == want and len(arts) == 2 * len(want)
    for a in arts:
        assert a["status"] == "pass", a
        assert a["runtime"].startswith(FORMATS[Path(a["artifact"]).suffix]), a
        assert a["platform"]["machine"] == "aarch64" and a["platform"]["runner"] == "native", a["platform"]
        assert isinstance(a["delegate"], dict) and a["delegate"].get("name"), a["delegate"]  # the runner's report
        acc = a["accuracy"]  # measured on the device's outputs against the host's golden vectors
        assert acc and acc["accuracy"] is not None and acc["top1_agreement"] >= 97, acc
        if a["recipe"] == "fp32":
            assert acc["max_abs_error"] <= 1e-4, acc
    # the runner is started through the pushed loader, once per artifact
    runs = [q for q in server.requests if q.startswith("shell:") and LOADER in q]
    assert len(runs) == len(arts), server.requests
    for q in runs:
        rdir = q.split("--library-path ", 1)[1].split()[0][: -len("/lib")]
        assert f"{rdir}/lib/ld-linux-aarch64.so.1 --library-path {rdir}/lib {rdir}/" in q, q
    first = [p for p in server.sent if "/runs/" not in p]
    assert any(p.endswith("/lib/ld-linux-aarch64.so.1") for p in first) and any(p.endswith("/lib/libc.so.6")
                                                                                 for p in first), first
    del server.sent[:]
    t0 = time.monotonic()
    again = validate(bundle, device="adb", runs=3).records
    second_s = time.monotonic() - t0
    assert all(a["status"] == "pass" for a in again), again
    assert [p for p in server.sent if "/runs/" not in p] == [], server.sent  # runners, glibc, models: cached
    assert server.sent and all(p.rsplit("/", 1)[1].startswith("input_") for p in server.sent), server.sent
    print(f"\nfirst validate {first_s:.1f} s ({len(first)} runner/library/model files pushed), "
          f"second {second_s:.1f} s (none)")


def test_the_cli_runs_adb_with_no_runner(adb_server, bundle, monkeypatch):
    """`edgeship bench X --device adb` with no --runner (it was refused with 'needs --runner PATH'):
    edgeship's own aarch64 runner, through the pushed loader, on the stand-in phone."""
    server = adb_server()
    monkeypatch.delenv("EDGESHIP_ADB_RUNNER", raising=False)
    r = run_cli("bench", bundle / "digits.int8.tflite", "--device", "adb", "--runs", "3", "--warmup", "1",
                env={**server.env(), "EDGESHIP_ADB_RUNNER": ""})
    assert r.exit_code == 0, r.output
    assert "needs --runner" not in r.output and "Traceback" not in r.output
    assert any(LOADER in req for req in server.requests), "the runner was not started through the pushed loader"


def test_outputs_match_the_host_within_1e4(adb_server, bundle, monkeypatch):
    """Each fp32 artifact through the pushed runner on the "phone" vs the host's run (`local`) on
    the golden inputs: within 1e-4; int8 argmax agreeing on at least 97% of the samples."""
    from edgeship.bundle import read_bundle
    from edgeship.runtime.device import open_device

    server = adb_server()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    b = read_bundle(bundle)
    inputs = b.golden().inputs
    phone, host = open_device("adb"), open_device("local")
    for rec in b.artifacts:
        path = b.artifact_path(rec)
        got = phone.run_artifact(path, inputs, rec["io"], warmup=1, runs=2)
        ref = host.run_artifact(path, inputs, rec["io"], warmup=1, runs=2)
        assert got.ok and ref.ok, (path.name, got.error, ref.error)
        assert got.result["loader"].startswith("pushed glibc loader"), got.result
        a, g = ref.outputs[0], got.outputs[0]
        assert a.shape == g.shape, path.name
        if rec["recipe"] == "fp32":
            assert float(np.max(np.abs(a - g))) <= 1e-4, (path.name, float(np.max(np.abs(a - g))))
        else:
            assert (a.argmax(1) == g.argmax(1)).mean() >= 0.97, path.name


def test_the_pushed_glibc_runs_where_the_phone_has_none(adb_server, bundle, monkeypatch):
    """A stand-in phone whose glibc is not there for what `timeout` starts (an empty QEMU_LD_PREFIX;
    this host has no arm64 glibc): the rootfs's own programs cannot start there, edgeship's runner
    through its pushed loader does, and the loader's --list shows every library from the pushed lib/.
    Real: the loader, the libraries, the runner, QEMU. Stand-in: hiding the glibc via QEMU's prefix
    (Android has no glibc at all, and its shell is not a Debian chroot's)."""
    import shutil

    server = adb_server(hide_glibc=True)
    # control: the rootfs's own arm64 /bin/true (copied to the "phone's" storage: the host's /bin/true
    # would be found instead) cannot start under `timeout` here, for want of the phone's glibc loader
    shutil.copy(server.rootfs / "bin" / "true", server.data / "true-arm64")
    control = adb(server, "shell", "timeout 30 /data/local/tmp/true-arm64; echo rc=$?")
    assert "rc=0" not in control.stdout and "ld-linux-aarch64.so.1" in control.stdout, control.stdout
    assert "rc=0" in adb(server, "shell", "/data/local/tmp/true-arm64; echo rc=$?").stdout  # it does outside
    from edgeship.api import validate

    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("EDGESHIP_ADB_RUNNER", raising=False)
    for name in ("digits.int8.tflite", "digits.int8.pte"):
        a = validate(bundle / name, device="adb", runs=3).records[0]
        assert a["status"] == "pass" and a["runtime"].startswith(FORMATS[Path(name).suffix]), a
    started = [q for q in server.requests if q.startswith("shell:") and LOADER in q and "/litert_runner " in q]
    assert started, server.requests
    rdir = started[0].split("--library-path ", 1)[1].split()[0][: -len("/lib")]
    listed = adb(server, "shell", f"timeout 60 {rdir}/lib/ld-linux-aarch64.so.1 --library-path {rdir}/lib "
                                  f"--list {rdir}/litert_runner")
    libs = [ln.split("=>", 1)[1].split("(")[0].strip() for ln in listed.stdout.splitlines() if "=>" in ln]
    assert any(p.endswith("/libc.so.6") for p in libs), listed.stdout
    assert all(p.startswith(f"{rdir}/lib/") or p == "./lib/ld-linux-aarch64.so.1" or
               p.endswith(f"{rdir}/lib/ld-linux-aarch64.so.1") for p in libs), listed.stdout


def test_the_glibc_pushed_is_what_the_runners_need(tmp_path):
    """The folder adb pushes holds the loader and every DT_NEEDED of the runner and its libraries,
    recursively (readelf -d on the real aarch64 files), and nothing from outside the toolchain/rootfs."""
    for kind in native_build.KINDS:
        runner = native_build.ensure_runner("aarch64", kind)
        files = adb_native.bundle(runner)
        names = {Path(rel).name for rel in files}
        assert "ld-linux-aarch64.so.1" in names and "libc.so.6" in names and "libstdc++.so.6" in names, names
        for f in files.values():
            missing = set(adb_native.needed(f)) - names
            assert not missing, (f, missing)
