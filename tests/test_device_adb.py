"""adb and adb:SERIAL for real: Debian's `adb` client talks to an adb server on loopback written
for the tests (tests/adb_test_server.py), whose device is the emulated Pi's arm64 root filesystem.
The runners pushed are stand-ins (tests/runner_standins/): for LiteRT's benchmark_model, run by the
rootfs's arm64 Python with the real LiteRT runtime, so its timings are real emulated timings; for
ExecuTorch's executor_runner, a C++ program of ours built for aarch64 against the aarch64
executorch wheel's libraries and run as arm64 code under QEMU, so its outputs are real ExecuTorch
outputs read back through adb and its timings emulated ones. Nothing run on the phone is x86 code.
The parsers are also checked on output in the real runners' formats (sources cited per test).
Some checks are plumbing: values the test server injects (its getprop answers: model, Android
release, ABI, ro.kernel.qemu) come back through edgeship and adb verbatim; they are labelled so.
A missing adb client fails the tests that need it (device_support.require_tool), never skips them.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.runtime.adb import NO_OUTPUTS, parse_benchmark_model, parse_executor_runner

from adb_test_server import AdbTestServer
from device_support import digits_bundle, emu_rootfs, require_tool  # noqa: F401  (fixtures)

STANDINS = Path(__file__).resolve().parent / "runner_standins"


def run_cli(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


# -- parsers on the real formats -------------------------------------------------------------

# LiteRT tensorflow/lite/tools/benchmark/benchmark_model.cc (BenchmarkLoggingListener::OnBenchmarkEnd)
# prints the last line; tensorflow/core/util/stats_calculator.h (Stat::OutputToStream) the count= lines.
# Verbatim from a benchmark_model run on an Android phone (quoted in LiteRT/TensorFlow issue reports).
BENCHMARK_MODEL_OUT = """\
INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
"""

# ExecuTorch examples/portable/executor_runner/executor_runner.cpp: its ET_LOG format strings
# ("Model loaded in %f ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s)
# in %f ms.", "Writing output to file: %s") behind ET_LOG's "I <time> executorch:<file>:<line>] ".
EXECUTOR_RUNNER_OUT = """\
I 00:00:00.000518 executorch:executor_runner.cpp:186] Model file model.pte is loaded.
I 00:00:00.000536 executorch:executor_runner.cpp:195] Using method forward
I 00:00:00.004201 executorch:executor_runner.cpp:368] Model loaded in 3.612000 ms.
I 00:00:00.005102 executorch:executor_runner.cpp:527] Iteration 1 of 3: 0.871000 ms
I 00:00:00.005899 executorch:executor_runner.cpp:527] Iteration 2 of 3: 0.774000 ms
I 00:00:00.006688 executorch:executor_runner.cpp:527] Iteration 3 of 3: 0.769000 ms
I 00:00:00.006702 executorch:executor_runner.cpp:536] Model executed successfully 3 time(s) in 2.414000 ms.
I 00:00:00.006710 executorch:executor_runner.cpp:545] 1 outputs: 
I 00:00:00.006731 executorch:executor_runner.cpp:557] Writing output to file: /data/local/tmp/edgeship/m/out-0.bin
"""


def test_parse_benchmark_model():
    r = parse_benchmark_model(BENCHMARK_MODEL_OUT)
    assert r["init_ms"] == pytest.approx(119.515) and r["first_ms"] == pytest.approx(87.112)
    lat = r["latency"]
    assert lat["runs"] == 1000 and lat["warmup"] == 9
    assert lat["p50_ms"] == pytest.approx(51.891) and lat["p95_ms"] == pytest.approx(68.628)
    assert lat["mean_ms"] == pytest.approx(63.7432) and lat["max_ms"] == pytest.approx(686.105)
    # benchmark_model prints no p90/p99: their upper bounds (p95, max) stand in, and say so
    assert lat["p90_ms"] == pytest.approx(68.628) and lat["p99_ms"] == pytest.approx(686.105)
    assert "no p90/p99" in lat["bounds"]
    with pytest.raises(ValueError):
        parse_benchmark_model("ERROR: Could not build model from the provided pre-loaded flatbuffer\n")


def test_parse_executor_runner():
    r = parse_executor_runner(EXECUTOR_RUNNER_OUT)
    assert r["init_ms"] == pytest.approx(3.612)
    assert r["latency"]["runs"] == 3 and r["latency"]["p50_ms"] == pytest.approx(0.774)
    assert r["latency"]["max_ms"] == pytest.approx(0.871)
    with pytest.raises(ValueError):
        parse_executor_runner("E 00:00:00.000100 executorch:executor_runner.cpp:150] Failed to open model\n")


# -- the real adb client against the loopback adb test server ---------------------------------


@pytest.fixture(scope="module")
def standin(emu_rootfs, tmp_path_factory) -> Path:
    """The benchmark_model stand-in as an executable whose #! is the rootfs's arm64 python3, with the
    arm64 numpy and ai-edge-litert it needs: the rootfs has no Python packages since they became the
    optional Python side (`devices setup emu:* --with-python`), so the stand-in puts that folder first
    on its path."""
    from edgeship.runtime.rootfs import ensure_binfmt, ensure_python_side

    ensure_binfmt()  # the server's shell execs arm64 programs through binfmt_misc
    side, _ = ensure_python_side()
    return install_standin(tmp_path_factory.mktemp("runner"), "benchmark_model", f"{emu_rootfs}/usr/bin/python3",
                           site=side)


def install_standin(folder: Path, name: str, python: str, site: Path | None = None) -> Path:
    """tests/runner_standins/NAME.py as an executable NAME run by `python` (its #! line), with SITE
    (a folder of packages) first on its import path."""
    path = folder / name
    first = f"import sys as _sys; _sys.path.insert(0, {str(site)!r})\n" if site else ""
    path.write_text(f"#!{python}\n" + first + (STANDINS / f"{name}.py").read_text())
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


ET_STANDIN_LIB = "et-standin-lib"  # the phone's /data/local/tmp/et-standin-lib: the stand-in's libraries there


@pytest.fixture(scope="module")
def et_standin() -> Path:
    """The executor_runner stand-in, tests/runner_standins/executor_runner.cpp, as an arm64 program:
    built with edgeship's cross compiler against the aarch64 executorch wheel (native_build's
    compile_command, as ensure_runner("aarch64") builds pte_runner), cached under
    ~/.cache/edgeship/standins/<sha256 of its source, the threadpool header, the version>/ with
    lib/ (the wheel's libraries edgeship pushes with pte_runner) beside it. The server runs it as
    arm64 code under QEMU. adb pushes only the file (--runner), so its rpath has two entries:
    $ORIGIN/lib for the cached file run as it is (the logcat test's wrapper), and
    $ORIGIN/../../et-standin-lib for the copy pushed to /data/local/tmp/edgeship/<artifact>/, whose
    libraries the adb_server fixture puts in the phone's /data/local/tmp/et-standin-lib (a link in
    the server's data folder) for every test that uses this fixture."""
    import hashlib
    import subprocess
    import tempfile

    from edgeship.runtime import native_build
    from edgeship.runtime.rootfs import cache_root

    source = STANDINS / "executor_runner.cpp"
    header = native_build.SOURCE.parent / "et_threadpool.h"
    spec, version = native_build.SPECS["pte"], native_build.executorch_version()
    cxx = native_build.compiler("aarch64")
    if cxx is None:
        pytest.fail(f"{native_build.CROSS_CXX} is not installed; this test needs it: {native_build.CROSS_APT}",
                    pytrace=False)
    root = spec.root("aarch64", version)  # the aarch64 wheel's executorch/{include,lib}
    key = hashlib.sha256(source.read_bytes() + header.read_bytes() + f"\0{version}".encode()).hexdigest()[:16]
    out = cache_root() / "standins" / key
    if (out / "executor_runner").is_file():
        return out / "executor_runner"
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    try:
        cmd = native_build.compile_command(cxx, source, stage / "executor_runner", root,
                                           f"$ORIGIN/lib:$ORIGIN/../../{ET_STANDIN_LIB}", version)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        assert p.returncode == 0, f"building the executor_runner stand-in failed:\n{p.stderr[-4000:]}"
        (stage / "lib").mkdir()
        for name in spec.libs:
            shutil.copy2(spec.lib_dir(root) / name, stage / "lib" / name)
        if not (out / "executor_runner").is_file():  # another session may have built it meanwhile
            shutil.rmtree(out, ignore_errors=True)
            stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out / "executor_runner"


@pytest.fixture(scope="module")
def small_pte_bundle(tmp_path_factory) -> Path:
    """torch digits CNN -> .pte, fp32 and int8 with integer I/O, 12 golden samples: executor_runner
    runs once per sample, and each run here starts the arm64 ExecuTorch anew under QEMU."""
    from device_support import REPO

    out = tmp_path_factory.mktemp("adbpte") / "digits"
    r = run_cli("-q", "export", f"{REPO / 'examples' / 'torch_digits.py'}:build", "--to", "pte", "--quant",
                "fp32,int8", "--int8-io", "--calib", "digits:train", "--calib-samples", "100", "--eval", "digits:test",
                "--golden-samples", "12", "--out", out, "--name", "digits")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def adb_server(emu_rootfs, tmp_path, request):
    require_tool("adb", "adb")  # Debian's adb client: edgeship drives it
    servers = []
    # a test with the executor_runner stand-in: its libraries in the phone's /data/local/tmp (see et_standin)
    et_lib = request.getfixturevalue("et_standin").parent / "lib" if "et_standin" in request.fixturenames else None

    def start(devices=None) -> AdbTestServer:
        s = AdbTestServer(emu_rootfs, tmp_path / f"data{len(servers)}", devices).start()
        if et_lib is not None:
            (s.data / ET_STANDIN_LIB).symlink_to(et_lib, target_is_directory=True)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def env_for(server: AdbTestServer) -> dict:
    return {"ANDROID_ADB_SERVER_PORT": str(server.port), "EDGESHIP_ADB_RUNNER": None}


def test_bench_through_adb(adb_server, standin, digits_bundle, tmp_path):
    server = adb_server()
    out = tmp_path / "bench.json"
    r = run_cli("bench", digits_bundle / "digits.int8.tflite", "--device", "adb", "--runner", standin,
                "--warmup", "3", "--runs", "20", "--json", out, env=env_for(server))
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert any(q.startswith("shell:") and "benchmark_model --graph=/data/local/tmp/edgeship/" in q
               for q in server.requests), server.requests
    assert "sync:" in server.requests
    rec = json.loads(out.read_text())["artifacts"][0]
    assert rec["runtime"] == "litert (benchmark_model)" and rec["ok"] is True, rec
    # the stand-in prints benchmark_model's "XNNPACK delegate" line only when the arm64 LiteRT
    # interpreter really holds XNNPACK partitions (DELEGATE nodes); edgeship reads it from the log
    assert rec["delegate"] == "XNNPACK", rec
    assert rec["latency"]["runs"] == 20 and rec["latency"]["warmup"] == 3, rec["latency"]


def test_validate_through_adb_says_accuracy_not_measured(adb_server, standin, digits_bundle, tmp_path):
    server = adb_server({"R5CT1234567": "device"})
    out = tmp_path / "v.json"
    r = run_cli("validate", digits_bundle / "digits.int8.tflite", "--device", "adb:R5CT1234567",
                "--runner", standin, "--runs", "10", "--json", out, env=env_for(server))
    assert r.exit_code == 1, r.output  # timings only: never a pass
    rec = json.loads(out.read_text())
    a = rec["artifacts"][0]  # validate --json writes "artifacts" (check's report.json writes "results")
    assert a["status"] == "error" and NO_OUTPUTS in a["error"]
    assert a["latency"]["p50_ms"] > 0 and a["init_ms"] > 0 and a["runtime"] == "litert (benchmark_model)"
    assert "host:tport:serial:R5CT1234567" in server.requests


@pytest.mark.parametrize("devices,uri,words", [
    ({}, "adb", "no adb device found"),
    ({"emulator-5554": "device", "R5CT1234567": "device"}, "adb", "several adb devices"),
    ({"emulator-5554": "device"}, "adb:0123456789ABCDEF", "'0123456789ABCDEF' not found"),
    ({"R5CT1234567": "unauthorized"}, "adb", "is unauthorized"),
    ({"R5CT1234567": "offline"}, "adb:R5CT1234567", "is offline"),
])
def test_device_errors(adb_server, standin, digits_bundle, devices, uri, words):
    server = adb_server(devices)
    r = run_cli("bench", digits_bundle / "digits.int8.tflite", "--device", uri, "--runner", standin,
                env=env_for(server))
    assert r.exit_code == 3, r.output
    assert words in r.output and "Traceback" not in r.output


def test_runner_missing_or_not_executable(adb_server, digits_bundle, tmp_path):
    server = adb_server()
    art = digits_bundle / "digits.int8.tflite"
    r = run_cli("bench", art, "--device", "adb", "--runner", tmp_path / "benchmark_model", env=env_for(server))
    assert r.exit_code == 3 and "runner not found" in r.output, r.output
    (tmp_path / "plain").write_text("not a program\n")
    r = run_cli("bench", art, "--device", "adb", "--runner", tmp_path / "plain", env=env_for(server))
    assert r.exit_code == 3 and "not executable" in r.output, r.output
    assert "Traceback" not in r.output


def test_adb_not_installed(digits_bundle, standin, tmp_path):
    r = run_cli("bench", digits_bundle / "digits.int8.tflite", "--device", "adb", "--runner", standin,
                env={"PATH": str(tmp_path)})
    assert r.exit_code == 3 and "adb is not installed" in r.output, r.output


def test_doctor_through_adb(adb_server):
    server = adb_server()
    r = run_cli("devices", "doctor", "adb", env=env_for(server))
    assert r.exit_code == 0, r.output
    # plumbing: the server's getprop hands these back verbatim (model, ABI)
    assert "arm64-v8a" in r.output and "Emulated arm64" in r.output and "benchmark_model" in r.output
    said = " ".join(r.output.replace("│", " ").split())
    for fmt, runner in ((".tflite", "litert_runner"), (".pte", "pte_runner"), (".onnx", "ort_runner")):
        assert f"runs {fmt}" in said and runner in said, said
    assert "ExecuTorch (native)" in said and "ONNX Runtime (native)" in said and "LiteRT (native)" in said, said
    assert "not on Android hardware" in said and "/data/local/tmp to allow exec" in said, said
    r = run_cli("devices", "doctor", "adb", "--json", env=env_for(server))
    rep = json.loads(r.output)
    assert rep["android"] == "14" and rep["emulated"] is True  # plumbing: getprop's answers again
    # edgeship's own runners, pushed and asked --probe through the pushed loader on the arm64 "phone"
    for key in ("executorch_native", "litert_native", "ort_native"):
        n = rep[key]
        assert n["available"] and n["machine"] == "aarch64", (key, n)
        assert n["loader"].startswith("/data/local/tmp/edgeship/native-") and n["loader"].endswith(
            "/lib/ld-linux-aarch64.so.1"), n
    assert rep["executorch_native"]["xnnpack"]["active"] and rep["litert_native"]["xnnpack"]["active"]
    assert all(f["runs"] for f in rep["formats"].values()), rep["formats"]
    # parsed by edgeship from what the device's own files say, not from the server's answers: the
    # shell's /proc/cpuinfo and /proc/meminfo are this host kernel's (read here too), df of /data/local/tmp
    host_cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name"))
    assert rep["cpu_model"].endswith(f"Android 14: {host_cpu}"), (rep["cpu_model"], host_cpu)
    assert rep["cores"] >= 1
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    assert rep["mem_total_mb"] == pytest.approx(mem_kb / 1024)
    free_mb = shutil.disk_usage(server.data).free / 2**20
    assert abs(rep["disk_free_mb"] - free_mb) <= 0.05 * free_mb + 64, (rep["disk_free_mb"], free_mb)


def test_validate_pte_through_adb_with_executor_runner(adb_server, et_standin, standin, small_pte_bundle, tmp_path):
    """.pte over adb end to end: inputs pushed as the program's raw tensors (int8 I/O quantized with
    the manifest's parameters), executor_runner run per sample, out-N.bin pulled and compared with
    the golden vectors on the host. Both runners given: each artifact gets its own."""
    server = adb_server()
    out = tmp_path / "v.json"
    r = run_cli("validate", small_pte_bundle, "--device", "adb", "--runner", standin, "--runner", et_standin,
                "--warmup", "2", "--runs", "5", "--json", out, env=env_for(server))
    assert r.exit_code == 0, r.output
    print(r.output)
    assert "Traceback" not in r.output and "emulated" in r.output
    arts = json.loads(out.read_text())["artifacts"]
    assert {a["recipe"] for a in arts} == {"fp32", "int8"}
    for a in arts:
        assert a["status"] == "pass", a
        assert a["runtime"] == "executorch (executor_runner)"
        assert a["emulated"] is True  # plumbing: the server's getprop says ro.kernel.qemu=1
        assert a["latency"]["runs"] == 5 and a["latency"]["warmup"] == 2
        # executor_runner's log names no backend: no guess from the program's bytes
        assert a["delegate"] is None, a["delegate"]
    runs = [q for q in server.requests if q.startswith("shell:") and "executor_runner --model_path=" in q]
    assert len(runs) == 2 * 12, len(runs)  # once per golden sample, per artifact
    assert all("--inputs=/data/local/tmp/edgeship/" in q and "--output_file=" in q for q in runs)
    assert not any("benchmark_model --graph" in q for q in server.requests)


def test_a_pte_without_executor_runner_runs_through_edgeships_own_runner(adb_server, standin, small_pte_bundle,
                                                                        tmp_path):
    """Only benchmark_model given: the .pte runs through edgeship's aarch64 pte_runner, pushed with
    its glibc and started through the pushed loader (tests/test_adb_native.py tests that path)."""
    server = adb_server()
    out = tmp_path / "v.json"
    r = run_cli("validate", small_pte_bundle / "digits.int8.pte", "--device", "adb", "--runner", standin,
                "--runs", "3", "--json", out, env=env_for(server))
    assert r.exit_code == 0, r.output
    a = json.loads(out.read_text())["artifacts"][0]
    assert a["status"] == "pass" and a["runtime"].startswith("executorch-native"), a
    assert a["delegate"]["name"] == "XNNPACK" and a["delegate"]["active"] is True, a["delegate"]  # pte_runner's report
    assert any("/lib/ld-linux-aarch64.so.1 --library-path " in q and "/pte_runner " in q for q in server.requests)
    assert not any("executor_runner --model_path=" in q or "benchmark_model --graph" in q for q in server.requests)
    assert "Traceback" not in r.output


def test_check_reads_the_adb_runners_from_the_project_file(adb_server, et_standin, small_pte_bundle, tmp_path):
    """`check` on an adb device: the runners come from [measure] adb_runners (relative to the file)."""
    from device_support import REPO

    server = adb_server()
    shutil.copy(et_standin, tmp_path / "executor_runner")
    cfg = tmp_path / "edgeship.toml"
    cfg.write_text(f'devices = ["adb"]\nout = "{small_pte_bundle}"\n'
                   'targets = [{ format = "pte", recipe = "int8" }]\n'
                   f'[model]\nsource = "{REPO / "examples" / "torch_digits.py"}:build"\n'
                   '[measure]\nwarmup = 1\nruns = 3\nadb_runners = ["executor_runner"]\n')
    r = run_cli("check", cfg, "--skip-export", "--report-dir", tmp_path / "report", env=env_for(server))
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "Traceback" not in r.output and json.dumps(report).count("executor_runner") >= 1
    assert any("executor_runner --model_path=" in q for q in server.requests)
    # no adb_runners: edgeship's own aarch64 pte_runner runs it, through the glibc loader pushed with it
    cfg.write_text(cfg.read_text().replace('adb_runners = ["executor_runner"]\n', ""))
    del server.requests[:]
    r = run_cli("check", cfg, "--skip-export", "--report-dir", tmp_path / "report2", env=env_for(server))
    assert r.exit_code == 0, r.output
    assert not any("executor_runner --model_path=" in q for q in server.requests)
    assert any("/lib/ld-linux-aarch64.so.1 --library-path " in q and "/pte_runner " in q for q in server.requests)


def test_a_failing_executor_runner_is_one_clear_line(adb_server, small_pte_bundle, tmp_path):
    """A runner that fails on the device (here a script standing in for one built for another
    ABI, say) fails that artifact with the runner's last words, markup-safe, and exit 1."""
    server = adb_server()
    runner = tmp_path / "executor_runner"
    runner.write_text("#!/bin/sh\necho 'E 00:00:00.000120 executorch:executor_runner.cpp:156] "
                      "Loading of method forward failed with status 0x20'\nexit 1\n")
    runner.chmod(0o755)
    r = run_cli("bench", small_pte_bundle / "digits.int8.pte", "--device", "adb", "--runner", runner, "--runs", "3",
                env=env_for(server))
    assert r.exit_code == 1, (r.output, r.exception)
    said = " ".join(r.output.split())
    assert "executor_runner exit 1" in said and "executor_runner.cpp:156] Loading of method" in said, r.output
    assert "Traceback" not in r.output


def test_executor_runner_logging_to_logcat_is_read_from_logcat(adb_server, et_standin, small_pte_bundle, tmp_path):
    """An executor_runner built with ExecuTorch's Android preset prints no ET_LOG lines: its PAL
    (runtime/platform/default/android.cpp) sends them to Android's log, tag ExecuTorch. Stand-ins:
    the runner (a wrapper around the executor_runner stand-in, itself real arm64 ExecuTorch under QEMU,
    that writes those lines, as logcat prints them, into the test server's logcat buffer and nothing
    to stdout) and `logcat` (the server's shell function over that buffer). edgeship clears the log
    before each run (logcat -c) and reads `logcat -d -s ExecuTorch:*` when stdout has no ET_LOG."""
    server = adb_server()
    wrapper = tmp_path / "executor_runner"
    wrapper.write_text(
        "#!/bin/sh\n# stand-in: executor_runner built for Android, logging through __android_log_print\n"
        f'{et_standin} "$@" > "$EDGESHIP_TEST_LOGCAT.run" 2>&1\nrc=$?\n'
        "sed -E 's/^([DIEF]) [0-9:.]+ executorch:[^]]*\\] ?(.*)$/12-07 05:00:00.000  4242  4242 \\1 ExecuTorch: \\2/' "
        '"$EDGESHIP_TEST_LOGCAT.run" | grep " ExecuTorch: " >> "$EDGESHIP_TEST_LOGCAT"\n'
        "exit $rc\n")
    wrapper.chmod(0o755)
    # an earlier run's lines left in the log: `logcat -c` must clear them
    server.logcat.write_text("12-07 04:59:59.000  4000  4000 I ExecuTorch: Iteration 1 of 1: 999.000000 ms\n"
                             "12-07 04:59:59.000  4000  4000 I ExecuTorch: Model executed successfully 1 time(s) "
                             "in 999.000000 ms.\n")
    out = tmp_path / "b.json"
    r = run_cli("bench", small_pte_bundle / "digits.fp32.pte", "--device", "adb", "--runner", wrapper,
                "--warmup", "1", "--runs", "4", "--json", out, env=env_for(server))
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())["artifacts"][0]
    assert rec["runtime"] == "executorch (executor_runner)" and rec["latency"]["runs"] == 4, rec
    assert rec["latency"]["max_ms"] < 999, rec["latency"]  # the stale line was cleared, not parsed
    assert rec["init_ms"] > 0 and rec["delegate"] is None, rec
    assert any("logcat -c" in q for q in server.requests) and any("logcat -d -s 'ExecuTorch:*'" in q
                                                                 for q in server.requests), server.requests
    assert "Traceback" not in r.output
