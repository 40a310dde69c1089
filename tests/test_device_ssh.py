"""ssh://user@host:port for real: OpenSSH's sshd on loopback whose sessions run inside the emulated
arm64 root filesystem (chroot + qemu-aarch64 through binfmt_misc): a Raspberry Pi over SSH, minus
the board. The client is the system's ssh/scp, driven by edgeship with a test ssh_config.

Each test sets up the device state it needs through a fixture, in any order: `bare_device` hides
the installed runtime for the test (and puts it back), `ready_device` installs it when it is
missing. `pytest -p randomly` (the default, shuffled) and `-p no:randomly` both pass.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time

import pytest
from click.testing import CliRunner

from edgeship.cli import cli

from device_support import SSHTestServer, digits_bundle, emu_rootfs, keygen  # noqa: F401  (fixtures)


def run_cli(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def sshd(emu_rootfs, tmp_path_factory):
    from edgeship.runtime.rootfs import ensure_binfmt

    ensure_binfmt()  # sessions exec the rootfs's arm64 shell and Python inside the chroot
    shutil.rmtree(emu_rootfs / "root" / ".edgeship", ignore_errors=True)  # a bare device
    server = SSHTestServer(emu_rootfs, tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def good_env(sshd):
    return {"EDGESHIP_SSH_CONFIG": str(sshd.client_config("good"))}


@pytest.fixture
def bare_device(sshd):
    """The device as it is before `devices setup`: ~/.edgeship moved aside for the test. Afterwards a
    runtime the test installed stays; otherwise the one moved aside comes back."""
    home, aside = sshd.rootfs / "root" / ".edgeship", sshd.rootfs / "root" / ".edgeship.aside-by-test"
    shutil.rmtree(aside, ignore_errors=True)
    if home.exists():
        home.rename(aside)
    yield sshd
    if home.exists():
        shutil.rmtree(aside, ignore_errors=True)
    elif aside.exists():
        aside.rename(home)


@pytest.fixture
def ready_device(sshd, good_env):
    """The device with edgeship's runtime installed: `devices setup` runs when it is missing."""
    if not (sshd.rootfs / "root/.edgeship/venv/bin/python").exists():
        r = run_cli("devices", "setup", sshd.uri, env=good_env)
        assert r.exit_code == 0, r.output
    return sshd


def test_unknown_host_key_is_never_accepted(sshd):
    env = {"EDGESHIP_SSH_CONFIG": str(sshd.client_config("unknown", known_host_key=""))}
    r = run_cli("devices", "doctor", sshd.uri, env=env)
    assert r.exit_code == 3, r.output
    assert "host key" in r.output and "not known" in r.output and f"ssh -p {sshd.port} root@127.0.0.1" in r.output


def test_host_key_mismatch(sshd, tmp_path):
    other = keygen(tmp_path / "other_host_key")
    env = {"EDGESHIP_SSH_CONFIG": str(sshd.client_config("mismatch", known_host_key=other))}
    r = run_cli("devices", "doctor", sshd.uri, env=env)
    assert r.exit_code == 3, r.output
    assert "does not match the one in known_hosts" in r.output
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in r.output
    assert "Traceback" not in r.output


def test_authentication_failure(sshd, tmp_path):
    keygen(sshd.dir / "stranger_key")
    env = {"EDGESHIP_SSH_CONFIG": str(sshd.client_config("stranger", key="stranger_key"))}
    r = run_cli("devices", "doctor", sshd.uri, env=env)
    assert r.exit_code == 3, r.output
    assert "authentication failed" in r.output and "Permission denied" in r.output
    assert "ssh-copy-id" in r.output


def test_unreachable_port(sshd, good_env):
    from device_support import free_port

    r = run_cli("devices", "doctor", f"ssh://root@127.0.0.1:{free_port()}", env=good_env)
    assert r.exit_code == 3, r.output
    assert "cannot connect" in r.output and "Connection refused" in r.output


def test_a_bare_device_needs_the_venv_only_for_python_runs(bare_device, sshd, good_env, digits_bundle):
    """No `devices setup`: .tflite runs through the runner edgeship pushes; the Python runtime
    (--tflite-runtime python) is that artifact's error, one line naming the fix."""
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", sshd.uri, "--runs", "3", env=good_env)
    assert r.exit_code == 0 and "litert-native" in r.output, r.output
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", sshd.uri, "--tflite-runtime", "python",
                env=good_env)
    assert r.exit_code == 1, r.output
    said = " ".join(r.output.replace("│", " ").split())
    assert "--tflite-runtime python needs Python on the device" in said, r.output
    assert f"edgeship devices setup {sshd.uri}" in said and "Traceback" not in r.output

    r = run_cli("devices", "doctor", sshd.uri, "--json", env=good_env)  # doctor works on a bare device, and says so
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["machine"] == "aarch64" and report["python3"] is True and report["venv"] is False
    assert report["formats"][".tflite"]["runs"] and report["formats"][".onnx"]["runs"]  # native runners need no venv
    assert report["formats"][".onnx"]["how"].startswith("native ONNX Runtime runner")


def test_setup_installs_the_runtime_in_a_venv(bare_device, sshd, good_env):
    assert not (sshd.rootfs / "root/.edgeship").exists()
    r = run_cli("devices", "setup", sshd.uri, "--json", env=good_env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    print(f"\nssh setup on the emulated arm64 board: {report['setup_seconds']:.0f} s")
    assert report["machine"] == "aarch64" and report["venv"] is True and report["onnxruntime"] is True
    assert report["python_executable"].endswith(".edgeship/venv/bin/python")
    assert report["tflite"]["available"] and report["tflite"]["xnnpack"]["active"] is True
    assert (sshd.rootfs / "root/.edgeship/venv/bin/python").exists()


def test_setup_with_executorch_needs_the_torch_index_and_loses_nothing(ready_device, sshd, good_env, monkeypatch):
    """--with-executorch fetches torch from PyTorch's CPU index on this host before touching the
    device. An index that cannot be reached (a closed port on loopback stands for it) is one clear
    line, exit 3, and the LiteRT runtime installed before still runs."""
    from device_support import free_port

    monkeypatch.setenv("EDGESHIP_TORCH_INDEX_URL", f"http://127.0.0.1:{free_port()}/whl/cpu")
    r = run_cli("devices", "setup", sshd.uri, "--with-executorch", env=good_env)
    assert r.exit_code == 3, r.output
    said = " ".join(r.output.split())
    assert "cannot download torch==" in said and "it cannot be reached from this host" in said, r.output
    assert "Traceback" not in r.output
    r = run_cli("devices", "doctor", sshd.uri, env=good_env)
    assert r.exit_code == 0, r.output
    r = run_cli("devices", "setup", "emu:rpi4", "--with-executorch")
    assert r.exit_code == 2 and "installs onto ssh:// devices" in r.output


def test_validate_over_ssh(ready_device, sshd, good_env, digits_bundle, tmp_path):
    runs_dir = sshd.rootfs / "root/.edgeship/runs"
    before = set(runs_dir.iterdir()) if runs_dir.exists() else set()  # a dropped run of another test may leave one
    out = tmp_path / "r.json"
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", sshd.uri, "--runs", "10",
                "--json", out, env=good_env)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    rec = data["artifacts"][0]
    # this board is edgeship's emulated arm64 rootfs under QEMU (its marker file): labelled so
    assert data["context"]["emulated"] is True and rec["emulated"] is True
    assert rec["status"] == "pass" and rec["platform"]["machine"] == "aarch64"
    assert rec["runtime"].startswith("litert-native") and rec["platform"]["runner"] == "native"
    assert rec["delegate"]["active"] is True and rec["accuracy"]["top1_agreement"] >= 97.0
    # the artifact was pushed once, under its sha256, and the run folder was removed
    pushed = list((sshd.rootfs / "root/.edgeship/artifacts").glob("*/digits.int8.tflite"))
    from edgeship.hashing import sha256_file

    assert [p.parent.name for p in pushed] == [sha256_file(digits_bundle / "digits.int8.tflite")]
    assert set(runs_dir.iterdir()) == before  # this run's folder was removed


def test_pte_over_ssh_says_why(ready_device, sshd, good_env, digits_bundle):
    r = run_cli("validate", digits_bundle / "digits.int8.pte", "--device", sshd.uri, "--runs", "2",
                "--pte-runtime", "python", env=good_env)
    assert r.exit_code == 1, r.output
    assert "ExecuTorch's Python runtime needs torch" in r.output and "Traceback" not in r.output


@pytest.fixture
def drop_runs(sshd, monkeypatch):
    """drop(artifact, times): the next `times` agent runs of ARTIFACT lose their connection mid-run.

    Test scaffolding: those runs are held on the device (their --runs and --max-seconds stretched,
    so the agent keeps timing until the drop), and a watcher SIGKILLs the server's sessions once it
    sees one running. No race with the run's length: a held run ends only by the drop (or, if the
    drop never comes, by the run's own timeout, which fails the test)."""
    from edgeship.runtime.ssh import SSHDevice

    real_ssh = SSHDevice.ssh
    held = {"name": None, "left": 0}

    def ssh(self, command, timeout=120.0, check=True):
        runs = "edgeship_agent.agent run" in command or "litert_runner" in command  # Python agent or native runner
        if held["left"] and runs and held["name"] in command:
            held["left"] -= 1
            command = re.sub(r"--runs \d+", "--runs 1000000000", command)
            command = re.sub(r"--max-seconds \S+", "--max-seconds 1000000", command)
        return real_ssh(self, command, timeout=timeout, check=check)

    monkeypatch.setattr(SSHDevice, "ssh", ssh)
    threads = []

    def drop(artifact: str, times: int) -> None:
        held.update(name=artifact, left=times)

        def watch():
            done, deadline = 0, time.monotonic() + 600  # a guard for the thread, not a verdict
            while done < times and time.monotonic() < deadline:
                if sshd.running("--runs 1000000000"):
                    sshd.drop_connections()
                    done += 1
                    while sshd.running("--runs 1000000000"):
                        time.sleep(0.05)
                time.sleep(0.05)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        threads.append(t)

    yield drop
    for t in threads:
        t.join(10)


def test_dropped_connection_is_retried_once(ready_device, sshd, good_env, digits_bundle, drop_runs, monkeypatch):
    import numpy as np

    from edgeship.runtime.ssh import SSHDevice

    for k, v in good_env.items():
        monkeypatch.setenv(k, v)
    device = SSHDevice(sshd.uri)
    artifact = digits_bundle / "digits.fp32.tflite"
    drop_runs(artifact.name, times=1)
    run = device.run_artifact(artifact, [np.zeros((3, 1, 8, 8), np.float32)], None, warmup=0, runs=50, timeout=120)
    assert run.ok, run.error
    assert device.retries == 1 and run.result["latency"]["runs"] == 50  # the retry is the run asked for
    assert run.outputs[0].shape == (3, 10)


def test_dropped_twice_fails_that_artifact_and_keeps_the_others(ready_device, sshd, good_env, digits_bundle,
                                                                 drop_runs, monkeypatch):
    """validate over a bundle whose int8 run loses its connection twice: that artifact is an error
    naming the dropped connection; the results of the others are kept."""
    for k, v in good_env.items():
        monkeypatch.setenv(k, v)
    from edgeship.validation import ValidateRequest, validate

    drop_runs("digits.int8.tflite", times=2)
    results, context = validate(ValidateRequest(digits_bundle, device=sshd.uri, runs=20, timeout=120))
    by_name = {r["artifact"]: r for r in results}
    assert by_name["digits.fp32.tflite"]["status"] == "pass"
    assert by_name["digits.fp32.tflite"]["accuracy"]["top1_agreement"] >= 97.0
    err = by_name["digits.int8.tflite"]
    assert err["status"] == "error" and "dropped during the run, twice (retried once)" in err["error"]
