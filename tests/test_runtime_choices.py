"""A command's runtime choices (--pte-runtime, --runner) hold for that command only: a later call in
the same process (another in-process CLI call, or a Python API user) gets the defaults again. Real
.pte export of the digits CNN, the real native runner and ExecuTorch's Python runtime."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.errors import InputError
from edgeship.runtime import native_build
from edgeship.runtime.adb import RUNNER_ENV
from edgeship.runtime.local import LocalDevice


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def digits_pte(tmp_path_factory, torch_digits):
    from edgeship.bundle import read_bundle
    from edgeship.pipeline import ExportRequest, export

    out = tmp_path_factory.mktemp("choices") / "bundle"
    export(ExportRequest(source=torch_digits.source, out=out, targets=["pte"], recipes="fp32", golden_samples=8))
    bundle = read_bundle(out)
    rec = next(a for a in bundle.artifacts if a["format"] == "pte")
    return bundle.artifact_path(rec), bundle.golden().inputs, rec["io"]


def bench_runtime(pte, tmp_path, *extra) -> str:
    out = tmp_path / f"bench{len(list(tmp_path.iterdir()))}.json"
    r = run_cli("bench", pte[0], "--warmup", "1", "--runs", "2", "--json", out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["artifacts"][0]["runtime"]


def test_pte_runtime_python_does_not_outlive_its_command(digits_pte, tmp_path, monkeypatch):
    monkeypatch.delenv(native_build.ENV_RUNTIME, raising=False)
    native_build.ensure_runner("host")  # this host builds the native runner: the default is native
    native = f"executorch-native {native_build.executorch_version()}"
    assert bench_runtime(digits_pte, tmp_path, "--pte-runtime", "python").startswith("executorch ")
    # a Python API user after it, and the next command in this process, get the default again
    assert native_build.pte_runtime() == "native"
    assert native_build.ENV_RUNTIME not in os.environ
    run = LocalDevice().run_artifact(*digits_pte, warmup=1, runs=2)
    assert run.ok and run.result["runtime"] == native, run.error
    assert bench_runtime(digits_pte, tmp_path) == native


def test_pte_runtime_from_the_environment_is_still_the_users_default(digits_pte, tmp_path, monkeypatch):
    monkeypatch.setenv(native_build.ENV_RUNTIME, "python")
    assert bench_runtime(digits_pte, tmp_path).startswith("executorch ")
    assert bench_runtime(digits_pte, tmp_path, "--pte-runtime", "native").startswith("executorch-native ")
    assert native_build.pte_runtime() == "python"


def test_runner_does_not_outlive_its_command(tmp_path, monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    runner = tmp_path / "benchmark_model"
    runner.write_text("#!/bin/sh\nexit 0\n")
    runner.chmod(runner.stat().st_mode | stat.S_IXUSR)
    # the command stops at its missing artifact, before any adb device is opened
    r = run_cli("bench", tmp_path / "missing.tflite", "--device", "adb", "--runner", runner)
    assert r.exit_code == 2, r.output
    assert RUNNER_ENV not in os.environ
    from edgeship import context

    assert context.adb_runners() == ()  # the command's --runner went with the command


def test_runtime_choices_nest_and_always_reset(tmp_path, monkeypatch):
    from edgeship import context

    monkeypatch.delenv(native_build.ENV_RUNTIME, raising=False)
    with pytest.raises(SystemExit):
        with context.runtime_choices(pte_runtime="python", adb_runners=[tmp_path / "benchmark_model"]):
            with context.runtime_choices():  # a choice left out keeps the enclosing one
                assert native_build.pte_runtime() == "python"
                assert context.adb_runners() == ((tmp_path / "benchmark_model").resolve(),)
            raise SystemExit(1)  # what a command's non-zero exit does
    assert context.pte_runtime() is None and context.adb_runners() == ()
    assert native_build.pte_runtime() == "native"
    with pytest.raises(InputError, match="unknown .pte runtime 'pyhton'"):
        with context.runtime_choices(pte_runtime="pyhton"):
            pass
