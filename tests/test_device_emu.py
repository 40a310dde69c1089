"""emu:rpi4 / emu:rpi5 for real: Debian arm64 under qemu-aarch64-static, edgeship's aarch64 LiteRT and
ExecuTorch runners with XNNPACK and its ONNX Runtime runner, no Python package in the root filesystem.

The session fixture builds the root filesystem with edgeship's own setup code (minutes, once;
cached under ~/.cache/edgeship). Needs root, debootstrap and qemu-user-static (see .ci/run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

from device_support import REPO, digits_bundle, emu_rootfs  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    """The torch digits CNN exported to .onnx, fp32 and int8, 100 golden samples."""
    out = tmp_path_factory.mktemp("emu-onnx") / "digits"
    r = run_cli("-q", "export", f"{REPO / 'examples' / 'torch_digits.py'}:build", "--to", "onnx", "--quant",
                "fp32,int8", "--calib", "digits:train", "--eval", "digits:test", "--golden-samples", "100", "--out",
                out, "--name", "digits")
    assert r.exit_code == 0, r.output
    return out


def run_cli(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_setup_again_is_cached_and_doctor_reports_the_board(emu_rootfs):
    r = run_cli("devices", "setup", "emu:rpi4", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["setup"] == "cached" and isinstance(report["setup_seconds"], (int, float))
    assert report["machine"] == "aarch64"
    assert report["cpu_model"].startswith("Cortex-A72")
    assert report["litert_native"]["available"] and report["litert_native"]["xnnpack"]["active"] is True
    assert report["formats"][".tflite"]["runs"] and report["formats"][".pte"]["runs"]
    et = report["executorch"]
    assert et["available"] is False and "torch" in et["reason"] and "aarch64" in et["reason"]

    r = run_cli("devices", "doctor", "emu:rpi4")
    assert r.exit_code == 0, r.output
    for words in ("Raspberry Pi 4", "emulated", "aarch64", "Cortex-A72", "XNNPACK", "active", "ExecuTorch",
                  "unavailable", "free disk", "memory", "runs .tflite", "Python side"):
        assert words in r.output, words


def test_rpi5_sees_a_cortex_a76_and_computes_int8_right(emu_rootfs, digits_bundle):
    r = run_cli("devices", "doctor", "emu:rpi5", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["qemu_cpu"] == "cortex-a76" and report["cpu_model"].startswith("Cortex-A76")
    assert report["litert_native"]["xnnpack"]["active"] is True
    # The A76 has dot-product instructions: XNNPACK takes other int8 kernels than on the A72.
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", "emu:rpi5", "--runs", "3")
    assert r.exit_code == 0, r.output


def test_tflite_pte_and_onnx_validate_with_no_python_package_on_the_board(emu_rootfs, digits_bundle, onnx_bundle,
                                                                           tmp_path, monkeypatch):
    """The rootfs as setup builds it has no Python package, and with no Python side installed
    (a cache of its own, holding only the rootfs and the native runners) every .tflite, .pte and
    .onnx of the bundles validates on emu:rpi4 through the aarch64 native runners; doctor says all
    three run with no Python package, and nothing gets installed."""
    from edgeship.runtime.emulated import EmulatedDevice
    from edgeship.runtime.rootfs import SITE, cache_root, cached_python_side

    real = cache_root()
    cache = tmp_path / "cache"
    (cache / "rootfs").mkdir(parents=True)
    (cache / "rootfs" / emu_rootfs.name).symlink_to(emu_rootfs)
    for name in ("native", "wheels"):  # the runners built (or to build) for aarch64: no Python in them
        (real / name).mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(real / name)
    monkeypatch.setenv("EDGESHIP_CACHE", str(cache))
    assert cached_python_side() is None
    assert not any((emu_rootfs / SITE).iterdir()), "setup installed Python packages into the rootfs"
    guest = EmulatedDevice("emu:rpi4").guest_command("probe")[:-2]
    proc = subprocess.run([*guest, "-c", "import numpy"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "No module named 'numpy'" in proc.stderr, proc.stderr

    out = tmp_path / "report.json"
    r = run_cli("validate", digits_bundle, "--device", "emu:rpi4", "--runs", "3", "--json", out)
    assert r.exit_code == 0, r.output
    records = json.loads(out.read_text())["artifacts"]
    assert {Path(a["artifact"]).suffix for a in records} == {".tflite", ".pte"} and len(records) == 4
    for rec in records:
        assert rec["status"] == "pass", rec
        want = "litert-native" if rec["artifact"].endswith(".tflite") else "executorch-native"
        assert rec["runtime"].startswith(want) and rec["platform"]["machine"] == "aarch64", rec

    out = tmp_path / "onnx.json"
    r = run_cli("validate", onnx_bundle, "--device", "emu:rpi4", "--runs", "3", "--json", out)
    assert r.exit_code == 0, r.output
    records = json.loads(out.read_text())["artifacts"]
    assert {Path(a["artifact"]).suffix for a in records} == {".onnx"} and len(records) == 2
    for rec in records:
        assert rec["status"] == "pass", rec
        assert rec["runtime"].startswith("onnxruntime-native") and rec["platform"]["machine"] == "aarch64", rec

    r = run_cli("devices", "doctor", "emu:rpi4", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["python_side"] is None and report["tflite"]["available"] is False
    f = report["formats"]
    assert f[".tflite"]["runs"] and f[".pte"]["runs"] and "no Python package" in f[".tflite"]["how"]
    assert f[".onnx"]["runs"] and "native ONNX Runtime runner" in f[".onnx"]["how"], f[".onnx"]
    assert report["ort_native"]["available"] and report["ort_native"]["machine"] == "aarch64"
    assert cached_python_side() is None  # nothing was installed on the way


def test_validate_int8_on_emulated_pi(emu_rootfs, digits_bundle, tmp_path):
    """The bundle's int8 .tflite on emu:rpi4: accuracy against the golden vectors, XNNPACK active
    on arm64, latency labelled emulated in the table and the JSON."""
    out = tmp_path / "report.json"
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", "emu:rpi4", "--runs", "10",
                "--json", out)
    assert r.exit_code == 0, r.output
    assert "emulated: not device latency" in r.output
    data = json.loads(out.read_text())
    assert data["context"]["device"] == "emu:rpi4" and data["context"]["emulated"] is True
    rec = data["artifacts"][0]
    assert rec["status"] == "pass" and rec["emulated"] is True
    assert rec["platform"]["machine"] == "aarch64"
    assert rec["delegate"]["active"] is True
    assert rec["accuracy"]["top1_agreement"] >= 97.0
    assert rec["latency"]["p50_ms"] > 0


def test_int8_outputs_host_vs_emulated_arm64(emu_rootfs, digits_bundle):
    """The same int8 artifact on x86 and on emulated arm64: close, not necessarily bit-identical."""
    from edgeship.bundle import read_bundle
    from edgeship.runtime.device import open_device

    bundle = read_bundle(digits_bundle)
    record = next(a for a in bundle.artifacts if a["path"] == "digits.int8.tflite")
    inputs = bundle.golden().inputs
    runs = {uri: open_device(uri).run_artifact(bundle.artifact_path(record), inputs, record["io"], runs=0)
            for uri in ("local", "emu:rpi4")}
    assert all(r.ok for r in runs.values()), {u: r.error for u, r in runs.items()}
    host, arm = runs["local"].outputs[0], runs["emu:rpi4"].outputs[0]
    diff = float(np.abs(host - arm).max())
    agree = float((host.argmax(1) == arm.argmax(1)).mean())
    print(f"\nint8 digits: max |host - emulated arm64| = {diff:.4g}; top-1 agreement {agree:.2%}")
    assert host.shape == arm.shape
    assert agree >= 0.99
    assert diff <= 0.05 * float(np.abs(host).max())


def test_pte_on_emulated_pi_says_why_it_cannot_run(emu_rootfs, digits_bundle):
    r = run_cli("validate", digits_bundle / "digits.int8.pte", "--device", "emu:rpi4", "--runs", "3",
                "--pte-runtime", "python")
    assert r.exit_code == 1
    text = " ".join(r.output.split())  # the table may wrap the line
    assert "ExecuTorch cannot run on this emulated arm64 device" in text
    assert "PyPI serves no CPU torch for aarch64" in text
    assert "Traceback" not in text


def test_bench_on_emulated_pi_is_labelled(emu_rootfs, digits_bundle, tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", digits_bundle / "digits.int8.tflite", "--device", "emu:rpi4", "--warmup", "2",
                "--runs", "5", "--json", out)
    assert r.exit_code == 0, r.output
    assert "on emu:rpi4 (emulated)" in r.output
    data = json.loads(out.read_text())
    assert data["context"]["emulated"] is True and data["artifacts"][0]["ok"]


def test_device_tests_suite_on_two_devices_in_parallel(emu_rootfs, digits_bundle, tmp_path):
    """`pytest device_tests --bundle DIR --device local --device emu:rpi4 -n 2 --dist loadgroup`:
    the .tflite artifacts pass on both; the latency budget is checked on the host and skipped, with
    the reason, on the emulated Pi; JUnit through pytest's own option. The budget is 0 ms, which no
    real run meets: the host's latency tests fail, whatever the machine's speed, and say so."""
    junit = tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "device_tests",
                           "--bundle", str(digits_bundle), "--device", "local", "--device", "emu:rpi4",
                           "--latency-p90-ms", "0", "-k", "tflite", "-n", "2", "--dist", "loadgroup",
                           f"--junitxml={junit}"], capture_output=True, text=True, timeout=900, cwd=str(REPO))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "latency on an emulated device is not device latency" in proc.stdout
    # 2 artifacts x 2 devices x 4 checks; the host's latency over the 0 ms budget, the emulated one skipped
    assert "2 failed, 12 passed, 2 skipped" in proc.stdout, proc.stdout[-3000:]
    from xml.etree import ElementTree as ET

    cases = ET.parse(junit).getroot().iter("testcase")
    failed = sorted((c.get("name"), c.find("failure").get("message", "")) for c in cases if c.find("failure") is not None)
    assert [name for name, _ in failed] == ["test_latency_within_budget[local::digits.fp32.tflite]",
                                            "test_latency_within_budget[local::digits.int8.tflite]"], failed
    assert all("> budget 0.0 ms" in message for _, message in failed), failed
    xml = junit.read_text()
    assert "emu:rpi4::digits.int8.tflite" in xml and "local::digits.int8.tflite" in xml
    assert "2 workers" in proc.stdout


def test_validate_on_several_devices(emu_rootfs, digits_bundle, tmp_path):
    out = tmp_path / "multi.json"
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", "local", "--device", "emu:rpi4",
                "--runs", "5", "--json", out)
    assert r.exit_code == 0, r.output
    assert r.output.count("accuracy vs golden vectors") == 2
    data = json.loads(out.read_text())
    assert [a["device"] for a in data["artifacts"]] == ["local", "emu:rpi4"]
    assert [a["emulated"] for a in data["artifacts"]] == [False, True]
    assert [c["device"] for c in data["context"]["devices"]] == ["local", "emu:rpi4"]


def test_several_devices_one_unreachable_still_runs_the_others(emu_rootfs, digits_bundle, tmp_path):
    from device_support import free_port

    out = tmp_path / "multi.json"
    bad = f"ssh://nobody@127.0.0.1:{free_port()}"
    r = run_cli("bench", digits_bundle / "digits.int8.tflite", "--device", bad, "--device", "emu:rpi4",
                "--warmup", "1", "--runs", "3", "--json", out)
    assert r.exit_code == 3, r.output
    assert "on emu:rpi4 (emulated)" in r.output and "cannot connect" in r.output
    data = json.loads(out.read_text())
    # bench and validate share one device loop (edgeship/cli/each_device.py): each unreachable device
    # is recorded with its error and the hint that was printed
    assert [u["device"] for u in data["context"]["unreachable"]] == [bad] and data["artifacts"][0]["device"] == "emu:rpi4"
    assert "cannot connect" in data["context"]["unreachable"][0]["error"] and data["context"]["unreachable"][0]["hint"]


def test_unknown_board_suggests_one():
    r = run_cli("devices", "doctor", "emu:rpi3")
    assert r.exit_code == 2
    assert "unknown emulated board 'rpi3'" in r.output and "Did you mean" in r.output


def test_emulated_device_not_set_up_names_the_fix(digits_bundle, tmp_path):
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", "emu:rpi4",
                env={"EDGESHIP_CACHE": str(tmp_path / "empty-cache")})
    assert r.exit_code == 3
    assert "edgeship devices setup emu:rpi4" in r.output
    assert "Traceback" not in r.output


def test_failed_build_leaves_nothing_behind(tmp_path):
    """A build against an unreachable mirror fails with one line, and no half-built folder stays."""
    cache = tmp_path / "cache"
    r = run_cli("devices", "setup", "emu:rpi4",
                env={"EDGESHIP_CACHE": str(cache), "EDGESHIP_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"})
    assert r.exit_code == 2, r.output
    assert "debootstrap failed" in r.output and "Traceback" not in r.output
    left = [p.name for p in (cache / "rootfs").iterdir() if not p.name.endswith((".log", ".lock"))]
    assert left == []


def test_an_older_rootfs_with_python_packages_is_derived_not_rebuilt(emu_rootfs, monkeypatch):
    """A cache holding only a builder-1 root filesystem (numpy and ai-edge-litert installed into it):
    setup derives the current one from it, hard-linked, in seconds, without its Python packages and
    without debootstrap; the old one is left as it was."""
    import os
    import shutil

    from edgeship.runtime.rootfs import MARKER, SITE, recipe, rootfs_path

    cache = emu_rootfs.parent / f".test-derive-{os.getpid()}"  # hard links: the rootfs's own file system
    shutil.rmtree(cache, ignore_errors=True)
    old = cache / "rootfs" / "bookworm-arm64-000000000001"
    try:
        old.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(emu_rootfs), str(old)], check=True)
        (old / MARKER).unlink()
        (old / MARKER).write_text(json.dumps({**recipe(), "builder": 1, "wheels": ["numpy==2.4.6"]}))
        (old / SITE / "numpy").mkdir(parents=True)
        (old / SITE / "numpy" / "__init__.py").write_text("")
        monkeypatch.setenv("EDGESHIP_CACHE", str(cache))
        monkeypatch.setenv("EDGESHIP_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")  # a debootstrap would fail
        r = run_cli("devices", "setup", "emu:rpi4", "--json")
        assert r.exit_code == 0, r.output
        assert "derive from bookworm-arm64-000000000001" in r.output
        new = rootfs_path()
        meta = json.loads((new / MARKER).read_text())
        assert meta["derived_from"] == old.name and meta["builder"] == recipe()["builder"]
        assert not any((new / SITE).iterdir()) and (old / SITE / "numpy" / "__init__.py").is_file()
        report = json.loads(r.output[r.output.index("{"):])
        assert report["formats"][".tflite"]["runs"] and report["python_side"] is None
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_check_config_accepts_emulated_and_ssh_devices(tmp_path):
    from edgeship.config import load_config

    p = tmp_path / "edgeship.toml"
    p.write_text('devices = ["local", "emu:rpi4", "emu:rpi5", "ssh://pi@raspberrypi.local:2222"]\n'
                 'targets = [{ format = "tflite", recipe = "int8" }]\n[model]\nsource = "net.py:build"\n'
                 '[data]\ncalib = "digits:train"\n')
    assert load_config(p).project.devices == ["local", "emu:rpi4", "emu:rpi5", "ssh://pi@raspberrypi.local:2222"]
