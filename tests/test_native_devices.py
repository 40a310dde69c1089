"""The native .pte runner on the emulated Pi (QEMU with the board's CPU, the rootfs's cpuinfo)
and on a Pi over SSH (the real sshd fixture, chrooted into the arm64 rootfs, which has no torch).
Every recipe's .pte round-trips on emu:rpi4 against the host's native run: float outputs within
tolerance, int8 outputs equal (or the differing elements are printed and bounded)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.bundle import read_bundle
from edgeship.cli import cli
from edgeship.runtime.device import open_device

from device_support import SSHTestServer, emu_rootfs  # noqa: F401  (fixtures)

RECIPES = ("fp32", "fp16", "dynamic-int8", "int8")
# fp16: a share of the outputs' largest magnitude. Host and board both run fp16 kernels, with their own
# accumulation orders: on an x86 host with AVX512-FP16 XNNPACK computes fp16 natively, and torch_digits'
# logits (|max| about 16) differed from the arm64 board's by up to 0.086 (0.5%); on AVX2 hosts (fp16 math done
# in fp32) they had stayed under 0.05
FLOAT_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "dynamic-int8": 1e-4}
FLOAT_ATOL_SCALED = {"fp16"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, torch_digits):
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path_factory.mktemp("native-dev") / "bundle"
    export(ExportRequest(source=torch_digits.source, out=out, targets=["pte"], recipes=",".join(RECIPES),
                         calib="digits:train", golden_samples=64))
    return read_bundle(out)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_round_trips_on_emulated_rpi4(emu_rootfs, bundle, recipe):
    rec = next(a for a in bundle.artifacts if a["recipe"] == recipe)
    path, inputs = bundle.artifact_path(rec), bundle.golden().inputs
    host = open_device("local").run_artifact(path, inputs, rec["io"], warmup=1, runs=3)
    emu = open_device("emu:rpi4").run_artifact(path, inputs, rec["io"], warmup=1, runs=3)
    assert host.ok and emu.ok, (host.error, emu.error)
    assert emu.result["runtime"].startswith("executorch-native") and emu.result["platform"]["machine"] == "aarch64"
    assert emu.result["delegate"]["active"] is True
    a, b = host.outputs[0], emu.outputs[0]
    assert a.shape == b.shape
    if recipe == "int8":
        differ = np.argwhere(a != b)
        if len(differ):  # reported, not hidden: XNNPACK's arm64 int8 kernels may round differently
            print(f"int8 on emu:rpi4: {len(differ)} of {a.size} elements differ from the host's: "
                  + ", ".join(f"{tuple(i)} {a[tuple(i)]:.6g} vs {b[tuple(i)]:.6g}" for i in differ[:10]))
        assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97
    else:
        scale = max(1.0, float(np.abs(a).max())) if recipe in FLOAT_ATOL_SCALED else 1.0
        np.testing.assert_allclose(b, a, atol=FLOAT_ATOL[recipe] * scale, rtol=1e-3)
    golden = bundle.golden().outputs[0]
    assert (b.argmax(1) == golden.argmax(1)).mean() >= 0.95


def test_validate_pte_on_emulated_rpi4_is_labelled(emu_rootfs, bundle, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["validate", str(bundle.root), "--device", "emu:rpi4", "--runs", "5",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "emulated: not device latency" in r.output and "executorch-native" in r.output
    data = json.loads(out.read_text())
    assert data["context"]["emulated"] is True
    for rec in data["artifacts"]:
        assert rec["status"] == "pass" and rec["runtime"].startswith("executorch-native"), rec
        assert rec["platform"]["machine"] == "aarch64" and rec["latency"]["p50_ms"] > 0


def test_doctor_shows_the_native_runtime_on_the_emulated_pi(emu_rootfs):
    r = CliRunner().invoke(cli, ["devices", "doctor", "emu:rpi4", "--json"])
    assert r.exit_code == 0, r.output
    native = json.loads(r.output[r.output.index("{"):])["executorch_native"]
    assert native["available"] is True and native["machine"] == "aarch64"
    assert native["runtime"].startswith("executorch-native") and native["xnnpack"]["active"] is True


@pytest.fixture(scope="module")
def sshd(emu_rootfs, tmp_path_factory):
    from edgeship.runtime.rootfs import ensure_binfmt

    ensure_binfmt()
    shutil.rmtree(emu_rootfs / "root" / ".edgeship", ignore_errors=True)  # a bare device
    server = SSHTestServer(emu_rootfs, tmp_path_factory.mktemp("sshd-native"))
    server.start()
    yield server
    server.stop()


def test_pte_over_ssh_runs_natively_with_no_torch_on_the_device(sshd, bundle, tmp_path):
    rootfs = sshd.rootfs
    torch_dirs = [p for p in rootfs.glob("**/*-packages/torch") if p.is_dir()]
    assert torch_dirs == [], torch_dirs  # the board has no torch anywhere
    env = {"EDGESHIP_SSH_CONFIG": str(sshd.client_config("native"))}
    r = CliRunner().invoke(cli, ["devices", "setup", sshd.uri, "--json"], env=env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    native = report["executorch_native"]
    assert native["available"] is True and native["machine"] == "aarch64" and native["xnnpack"]["active"]
    pushed = list((rootfs / "root/.edgeship").glob("native-*/lib/libexecutorch.so"))
    assert len(pushed) == 1

    rec = next(a for a in bundle.artifacts if a["recipe"] == "int8")
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["validate", str(bundle.artifact_path(rec)), "--device", sshd.uri, "--runs", "5",
                                 "--json", str(out)], env=env)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())["artifacts"][0]
    assert data["status"] == "pass" and data["runtime"].startswith("executorch-native")
    assert data["platform"]["machine"] == "aarch64" and data["accuracy"]["top1_agreement"] >= 97.0
    assert list((rootfs / "root/.edgeship/runs").iterdir()) == []
    # pushed once: a second doctor finds the same files by sha256 and copies nothing
    before = pushed[0].stat().st_mtime_ns
    r = CliRunner().invoke(cli, ["devices", "doctor", sshd.uri], env=env)
    assert r.exit_code == 0 and "ExecuTorch (native)" in r.output, r.output
    assert pushed[0].stat().st_mtime_ns == before
