"""`adb` and `adb:SERIAL`: an Android device through Debian's `adb` client and a native runner.

Android has no Python for the agent, so runs are native. By default (no --runner) edgeship
pushes its own aarch64 runners (adb_native.py: pte_runner for .pte, litert_runner for .tflite,
ort_runner for .onnx) with the wheels' libraries and a glibc of their own, and starts them
through the pushed loader (`lib/ld-linux-aarch64.so.1 --library-path lib runner ARGS`), so
nothing of the phone's bionic libc is used; their JSON report gives outputs, timings and the
delegate record. That path is proven on the arm64 test device only -- a Debian chroot under
QEMU behind a test adb server (tests/adb_test_server.py) -- not on Android hardware. On Android
it needs /data/local/tmp to allow exec (it does for `adb shell` on stock Android) and the pushed
glibc loader started explicitly, as adb_native does (the runners' own PT_INTERP,
/lib/ld-linux-aarch64.so.1, does not exist there); SELinux or seccomp policies that a real phone
applies to such programs are untested.

The user's own runners (`--runner PATH`) win for their format: LiteRT's `benchmark_model` for
.tflite, ExecuTorch's `executor_runner` for .pte. Both are pushed with the artifact to
/data/local/tmp/edgeship/, made executable and run under a timeout; their output is parsed into
the agent's result keys (latency in ms, init_ms, runtime, delegate). `executor_runner` also writes
outputs (`--inputs a.bin,b.bin --output_file out` -> out-0.bin, ...), which are pulled back for
accuracy; its ET_LOG lines come from its stdout or, built with ExecuTorch's Android preset (log
through __android_log_print, tag ExecuTorch), from `logcat -d -s ExecuTorch:*` after a
`logcat -c`. Its log names no backend, so its delegate is recorded as null ("not reported by
executor_runner"), not guessed. `benchmark_model` writes no outputs: accuracy is then not
measured, and the record says so.

The adb server's port follows ANDROID_ADB_SERVER_PORT, as the client itself does.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeship import context
from edgeship.errors import DeviceError, DeviceUnreachable, InputError, last_line
from edgeship.runtime import adb_native, native_build
from edgeship.runtime.base import AgentRun
from edgeship.runtime.standalone.executorch import from_stored, to_stored
from edgeship.runtime.standalone.timing import summarize

REMOTE_DIR = "/data/local/tmp/edgeship"
# what doctor says of edgeship's own runners on adb (adb_native.py)
ON_ANDROID = ("proven on the arm64 test device only (a Debian chroot under QEMU behind a test adb server), not on "
              "Android hardware; on Android it needs /data/local/tmp to allow exec and the pushed glibc loader "
              "started explicitly (edgeship does)")
RUNNER_ENV = "EDGESHIP_ADB_RUNNER"  # the user's default runners (os.pathsep-separated); --runner wins
NO_OUTPUTS = "not measured: benchmark_model prints timings only, no outputs (use executor_runner or another device for accuracy)"

# LiteRT tensorflow/lite/tools/benchmark/benchmark_model.cc, BenchmarkLoggingListener::OnBenchmarkEnd
_TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.eE+-]+), First inference: ([\d.eE+-]+), "
                      r"Warmup \(avg\): ([\d.eE+-]+), Inference \(avg\): ([\d.eE+-]+)")
# tensorflow/core/util/stats_calculator.h Stat::OutputToStream (benchmark_model's per-phase line)
_STATS = re.compile(r"count=(\d+)((?: \w+=[\d.eE+-]+)*)")
# executorch examples/portable/executor_runner/executor_runner.cpp ET_LOG lines
_ET_ITER = re.compile(r"Iteration (\d+) of (\d+): ([\d.eE+-]+) ms")
_ET_LOAD = re.compile(r"Model loaded in ([\d.eE+-]+) ms")
_ET_DONE = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.eE+-]+) ms")
# executorch runtime/platform/default/android.cpp, et_pal_emit_log_message:
# __android_log_print(level, "ExecuTorch", "%s", message) -- the message alone, no file:line prefix
LOGCAT_TAG = "ExecuTorch"


def parse_benchmark_model(text: str) -> dict:
    """LiteRT benchmark_model's stdout/stderr -> agent result keys (ms). Raises ValueError when
    the final timings line is missing (the run failed)."""
    m = _TIMINGS.search(text)
    if not m:
        raise ValueError("benchmark_model printed no 'Inference timings in us' line")
    init_us, first_us, warm_us, avg_us = (float(v) for v in m.groups())
    stats = [dict(kv.split("=") for kv in rest.split()) | {"count": n} for n, rest in _STATS.findall(text)]
    run = stats[-1] if stats else {}  # the last stats line is the timed runs' (the first, warm-up's)
    ms = lambda key: float(run[key]) / 1000.0 if key in run else None  # noqa: E731
    # benchmark_model prints median, p5, p95, max but no p90/p99: p90_ms and p99_ms carry their
    # upper bounds (p95, max), so a latency gate can only err on the strict side; `bounds` says so
    mean = avg_us / 1000.0
    p95, mx = ms("p95"), ms("max")
    latency = {"runs": int(run["count"]) if run else None, "p50_ms": ms("median") or mean,
               "p90_ms": p95 or mx or mean, "p95_ms": p95, "p99_ms": mx or mean, "p5_ms": ms("p5"),
               "mean_ms": mean, "min_ms": ms("min"), "max_ms": mx, "std_ms": ms("std"),
               "warmup": int(stats[0]["count"]) if len(stats) > 1 else None,
               "bounds": "p90_ms is benchmark_model's p95 and p99_ms its max (it prints no p90/p99)"
               if p95 is not None else "benchmark_model printed an average only: percentiles are that average"}
    return {"init_ms": init_us / 1000.0, "first_ms": first_us / 1000.0, "warmup_avg_ms": warm_us / 1000.0,
            "latency": latency}


def parse_executor_runner(text: str, warmup: int = 0) -> dict:
    """ExecuTorch executor_runner's log -> agent result keys (ms). executor_runner has no warm-up
    option: the first `warmup` iterations are dropped from the timings. Raises ValueError when it
    did not report a successful execution."""
    done = _ET_DONE.search(text)
    if not done:
        raise ValueError("executor_runner did not report 'Model executed successfully'")
    samples = [float(ms) for _, _, ms in _ET_ITER.findall(text)]
    if not samples:  # older runners log only the total
        n = int(done.group(1))
        samples = [float(done.group(2)) / max(n, 1)] * n
    dropped = min(warmup, max(len(samples) - 1, 0))
    load = _ET_LOAD.search(text)
    out = {"latency": summarize(samples[dropped:]) | {"source": "executor_runner", "warmup": dropped},
           "first_ms": samples[0]}
    if load:
        out["init_ms"] = float(load.group(1))
    return out


def runner_kind(path: Path) -> str:
    """Which runner a file is, by its name: 'executor_runner' (.pte; also xnn_executor_runner)
    or 'benchmark_model' (.tflite; any other name)."""
    return "executor_runner" if "executor_runner" in Path(path).name else "benchmark_model"


class AdbDevice:
    """An Android phone over adb (`adb`, `adb:SERIAL`): edgeship's aarch64 runners, or the user's, pushed per run."""

    scheme = "adb"
    setup_options: ClassVar[dict[str, str]] = {}
    setup_instead: ClassVar[dict[str, str]] = {
        "with_python": "Android has no Python: edgeship's aarch64 native runners run every format",
        "with_executorch": "adb runs .pte with edgeship's aarch64 pte_runner, or yours: --runner executor_runner"}
    emulated = False

    @classmethod
    def prepare(cls, uri: str, progress=None, rebuild: bool = False, **options) -> dict:
        """Nothing to install: the runners are pushed by the runs that use them. The phone's probe report."""
        report = cls(uri, require_runner=False).probe()
        report["setup"] = "nothing to do (runners are pushed at first use)"
        return report

    def preflight(self) -> None:
        """Nothing more to connect: the constructor found the phone in `adb devices`."""

    def __init__(self, uri: str, runner: str | Path | None = None, require_runner: bool = True):
        self.uri = uri
        self.serial = uri.split(":", 1)[1] if ":" in uri else None
        if self.serial == "":
            raise InputError("adb:SERIAL needs a serial (see `adb devices`), or use plain `adb`")
        # the command's --runner (edgeship.context.runtime_choices), else $EDGESHIP_ADB_RUNNER (the user's default);
        # none is fine: edgeship's own runners run every format (adb_native.py), so require_runner is unused
        given = ([runner] if runner else list(context.adb_runners())
                 or [p for p in os.environ.get(RUNNER_ENV, "").split(os.pathsep) if p])
        self.runners: dict[str, Path] = {}
        for path in map(Path, given):
            if not path.is_file():
                raise DeviceError(f"runner not found: {path}")
            if not os.access(path, os.X_OK):
                raise DeviceError(f"runner is not executable: {path} (chmod +x it)")
            self.runners[runner_kind(path)] = path
        self.adb = shutil.which("adb")
        if not self.adb:
            raise DeviceError("adb is not installed", hint="apt-get install adb (Debian) or Android's platform-tools")
        self.serial = self._pick_serial()
        self.emulated = self._is_emulator()

    # -- adb plumbing -------------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def _adb(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise DeviceUnreachable(f"adb {args[0]} timed out after {timeout:.0f} s on {self.uri}") from e
        if check and p.returncode != 0:
            msg = (p.stderr or p.stdout).strip().splitlines()
            raise DeviceUnreachable(f"adb {args[0]} failed on {self.uri}: {msg[-1] if msg else p.returncode}")
        return p

    def _pick_serial(self) -> str:
        try:
            p = subprocess.run([self.adb, "devices"], capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise DeviceUnreachable("adb devices timed out (is the adb server stuck?)") from e
        if p.returncode != 0:
            raise DeviceUnreachable(f"adb devices failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
        devices = {}
        for line in p.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2:
                devices[parts[0]] = parts[1]
        if not devices:
            raise DeviceUnreachable("no adb device found", hint="connect a phone with USB debugging on, then `adb devices`")
        if self.serial is None:
            if len(devices) > 1:
                raise DeviceError(f"several adb devices ({', '.join(sorted(devices))}): name one with --device adb:SERIAL")
            self.serial = next(iter(devices))
        state = devices.get(self.serial)
        if state is None:
            raise DeviceUnreachable(f"adb device {self.serial!r} not found (attached: {', '.join(sorted(devices))})")
        if state != "device":
            hint = "accept the USB debugging prompt on the phone" if state == "unauthorized" else "reconnect it; `adb devices`"
            raise DeviceUnreachable(f"adb device {self.serial} is {state}", hint=hint)
        return self.serial

    def _is_emulator(self) -> bool:
        """Android's emulators (QEMU-based) set ro.kernel.qemu=1 (ro.boot.qemu=1 on newer images);
        a phone sets neither. Latency measured on one is labelled emulated."""
        rc, out = self.shell("getprop ro.kernel.qemu; getprop ro.boot.qemu", timeout=30)
        return rc == 0 and "1" in out.split()

    def shell(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Run COMMAND in the device's shell; (exit status, stdout+stderr). The status comes back
        through an echoed marker, which old adb shells (no shell v2) would otherwise lose."""
        p = self._adb("shell", f"{command} 2>&1; echo __EDGESHIP_RC=$?", timeout=timeout, check=False)
        out = p.stdout
        m = re.search(r"__EDGESHIP_RC=(\d+)\s*$", out)
        if p.returncode != 0 and not m:
            raise DeviceUnreachable(f"adb shell failed on {self.uri}: {(p.stderr or out).strip()[-300:]}")
        return (int(m.group(1)) if m else p.returncode), out[: m.start()] if m else out

    def push(self, local: Path, remote: str) -> None:
        self._adb("push", str(local), remote, timeout=300)

    def pull(self, remote: str, local: Path) -> None:
        self._adb("pull", remote, str(local), timeout=300)

    def getprop(self, name: str) -> str:
        return self.shell(f"getprop {name}", timeout=30)[1].strip()

    def probe(self) -> dict:
        """`devices doctor adb`: the phone's model, Android release, ABI, cores, free disk and memory."""
        rc, out = self.shell("getprop ro.product.model; getprop ro.build.version.release; "
                             "getprop ro.product.cpu.abi; echo ==; cat /proc/cpuinfo; echo ==; "
                             "cat /proc/meminfo; echo ==; df -k /data/local/tmp", timeout=60)
        parts = out.split("==\n")
        props = (parts[0].splitlines() + ["", "", ""])[:3] if parts else ["", "", ""]
        cpuinfo = parts[1] if len(parts) > 1 else ""
        meminfo = dict(ln.split(":", 1) for ln in (parts[2] if len(parts) > 2 else "").splitlines() if ":" in ln)
        kb = lambda k: int(meminfo[k].split()[0]) / 1024 if k in meminfo else None  # noqa: E731
        df = (parts[3] if len(parts) > 3 else "").strip().splitlines()
        try:
            disk = int(df[-1].split()[3]) / 1024
        except (IndexError, ValueError):
            disk = None
        cpu = re.search(r"^(?:Hardware|model name)\s*:\s*(.+)$", cpuinfo, re.M)
        parts_ = sorted(set(re.findall(r"^CPU part\s*:\s*(\S+)", cpuinfo, re.M)))
        bm, et = self.runners.get("benchmark_model"), self.runners.get("executor_runner")
        # edgeship's own runners, pushed and asked --probe through the pushed loader: whether this phone runs them
        natives = {kind: adb_native.probe(self, kind) for kind in native_build.KINDS}
        formats = {}
        users = {".tflite": bm, ".pte": et}  # the --runner kinds (runner_kind), by the format they run
        for kind, spec in native_build.SPECS.items():
            fmt, user = spec.fmt, users.get(spec.fmt)
            n = natives.get(kind) or {"available": False, "reason": "no native runner of this kind"}
            formats[fmt] = ({"runs": True, "how": f"{user.name} (--runner), pushed per run"} if user else
                            {"runs": bool(n["available"]), "how": (
                                f"edgeship's aarch64 {native_build.SPECS[kind].binary} with a pushed glibc, started "
                                f"through its loader; {ON_ANDROID}" if n["available"] else
                                f"edgeship's aarch64 {native_build.SPECS[kind].binary} does not start: "
                                f"{n.get('reason')}")})
        # the user's runners (--runner), where given; else no Python runtime: the native rows run the formats
        tflite = ({"available": True, "runtime": f"native benchmark_model, pushed per run ({bm.name})",
                   "xnnpack": {"active": None, "detail": "the runner's choice (benchmark_model: --use_xnnpack)"}} if bm
                  else {"available": False, "reason": "no Python on Android: edgeship's litert_runner runs .tflite "
                        "(LiteRT (native)); or LiteRT's benchmark_model via --runner PATH"})
        executorch = ({"available": True, "runtime": f"native executor_runner, pushed per run ({et.name})"} if et
                      else {"available": False, "reason": "no Python on Android: edgeship's pte_runner runs .pte "
                            "(ExecuTorch (native)); or ExecuTorch's executor_runner via --runner PATH"})
        return {"ok": True, "device": self.uri, "serial": self.serial, "emulated": self.emulated,
                "model": props[0].strip(),
                "android": props[1].strip(), "machine": props[2].strip(),
                "cpu_model": f"{props[0].strip()}, Android {props[1].strip()}: " + (cpu.group(1).strip() if cpu else "?")
                + (f" (CPU part {', '.join(parts_)})" if parts_ else ""),
                "cores": len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or None,
                "python": "none (Android)", "python_executable": "native runners only",
                "tflite": tflite, "executorch": executorch,
                "mem_total_mb": kb("MemTotal"), "mem_available_mb": kb("MemAvailable"), "disk_free_mb": disk,
                "formats": formats, **{spec.report_key: natives[kind] for kind, spec in native_build.SPECS.items()
                                       if kind in natives}}

    # -- Device protocol ----------------------------------------------------------------------

    def run_artifact(self, artifact, inputs: list[np.ndarray], signature: dict | None, *, threads: int = 1,
                     warmup: int = 5, runs: int = 50, timeout: float = 300.0, verbose: bool = False) -> AgentRun:
        artifact = Path(artifact)
        kind = {".tflite": "benchmark_model", ".pte": "executor_runner"}.get(artifact.suffix)
        runner = self.runners.get(kind) if kind else None
        if runner is None:  # edgeship's own aarch64 runner, with the glibc it needs (adb_native.py)
            if artifact.suffix not in adb_native.FORMATS:
                return AgentRun(False, {}, None, f"adb runs .tflite, .pte and .onnx only, not {artifact.suffix}")
            return adb_native.run(self, artifact, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                  timeout=timeout)
        rdir = f"{REMOTE_DIR}/{artifact.stem}"
        rc, out = self.shell(f"rm -rf {shlex.quote(rdir)} && mkdir -p {shlex.quote(rdir)}")
        if rc:
            return AgentRun(False, {}, None, f"mkdir {rdir}: {out.strip()[-200:]}")
        rmodel, rrunner = f"{rdir}/{artifact.name}", f"{rdir}/{runner.name}"
        self.push(artifact, rmodel)
        self.push(runner, rrunner)
        rc, out = self.shell(f"chmod +x {shlex.quote(rrunner)}")
        if rc:
            return AgentRun(False, {}, None, f"chmod +x {rrunner}: {out.strip()[-200:]}")
        base = {"device": self.uri, "runner": runner.name, "emulated": self.emulated, "threads": threads}
        if kind == "benchmark_model":
            return self._benchmark_model(rrunner, rmodel, threads, warmup, runs, timeout, base)
        # executor_runner's log names no backend: nothing is guessed from the program's bytes
        base["delegate"] = None
        base["delegate_note"] = "not reported by executor_runner"
        return self._executor_runner(rrunner, rmodel, rdir, inputs, signature, threads, warmup, runs, timeout, base)

    def _with_logcat(self, out: str) -> str:
        """executor_runner's ET_LOG lines: on its stdout, or (built with ExecuTorch's Android preset,
        whose PAL logs through __android_log_print with the tag ExecuTorch) in Android's log."""
        if _ET_DONE.search(out) or "executorch:" in out:
            return out
        try:
            rc, log = self.shell(f"logcat -d -s '{LOGCAT_TAG}:*'", timeout=60)
        except DeviceUnreachable:
            return out
        return out + "\n" + log if rc == 0 and log.strip() else out

    def _run_runner(self, cmd: str, timeout: float, before: str = "") -> tuple[int, str] | AgentRun:
        # the device enforces the timeout too, so a hung runner does not outlive the call
        wrapped = before + (f"timeout {int(timeout)} {cmd}" if timeout else cmd)
        try:
            return self.shell(wrapped, timeout=timeout + 60)
        except DeviceUnreachable as e:
            return AgentRun(False, {}, None, e.message)

    def _benchmark_model(self, rrunner, rmodel, threads, warmup, runs, timeout, base) -> AgentRun:
        cmd = (f"{shlex.quote(rrunner)} --graph={shlex.quote(rmodel)} --num_threads={threads} "
               f"--num_runs={runs} --warmup_runs={warmup} --min_secs=0 --warmup_min_secs=0")
        got = self._run_runner(cmd, timeout)
        if isinstance(got, AgentRun):
            return got
        rc, out = got
        try:
            parsed = parse_benchmark_model(out)
        except ValueError as e:
            return AgentRun(False, base, None, f"benchmark_model exit {rc}: {last_line(out) or e}")
        delegate = "XNNPACK" if re.search(r"XNNPACK delegate", out) else None
        result = {**base, **parsed, "ok": rc == 0, "runtime": "litert (benchmark_model)", "delegate": delegate,
                  "accuracy_error": NO_OUTPUTS, "log_tail": out.strip().splitlines()[-3:]}
        return AgentRun(rc == 0, result, None, None if rc == 0 else f"benchmark_model exit {rc}: {last_line(out)}")

    def _executor_runner(self, rrunner, rmodel, rdir, inputs, signature, threads, warmup, runs, timeout,
                         base) -> AgentRun:
        """One executor_runner call per sample (it reads one set of input files): the first runs
        warmup + runs times for the timings (the warm-up iterations dropped), the rest once.
        Inputs are written, and outputs read, as the raw bytes of the tensors the program holds:
        (de)quantized per the manifest's signature."""
        in_specs, out_specs = _tensor_specs(signature, "inputs"), _tensor_specs(signature, "outputs")
        outputs: list[list[np.ndarray]] = []
        result = {**base, "runtime": "executorch (executor_runner)"}
        with tempfile.TemporaryDirectory(prefix="edgeship-adb-") as tmp:
            tmp = Path(tmp)
            n = len(inputs[0]) if inputs else 0
            for i in range(n):
                names = []
                for j, x in enumerate(inputs):
                    f = tmp / f"in{j}.bin"
                    _stored(np.ascontiguousarray(x[i:i + 1]), in_specs[j] if j < len(in_specs) else None).tofile(f)
                    self.push(f, f"{rdir}/in{j}.bin")
                    names.append(f"{rdir}/in{j}.bin")
                execs = warmup + runs if i == 0 else 1
                cmd = (f"{shlex.quote(rrunner)} --model_path={shlex.quote(rmodel)} --inputs={','.join(names)} "
                       f"--output_file={rdir}/out --num_executions={execs} --cpu_threads={threads} --print_output=none")
                # in the same shell call: a failed run must not leave the last sample's outputs behind,
                # nor Android's log an earlier run's lines
                got = self._run_runner(cmd, timeout, before=f"rm -f {rdir}/out-*.bin; logcat -c >/dev/null 2>&1; ")
                if isinstance(got, AgentRun):
                    return got
                rc, out = got
                out = self._with_logcat(out)
                try:
                    parsed = parse_executor_runner(out, warmup if i == 0 else 0)
                    if rc != 0:
                        raise ValueError(f"it exited with status {rc}")
                except ValueError as e:
                    return AgentRun(False, result, None, f"executor_runner exit {rc}: {last_line(out) or e}")
                if i == 0:
                    result.update(parsed)
                rc, listing = self.shell(f"ls {rdir}/out-*.bin")
                remotes = sorted(listing.split(), key=lambda s: int(s.rsplit("-", 1)[1][:-4])) if rc == 0 else []
                if not remotes:
                    return AgentRun(False, result, None, f"executor_runner wrote no output files ({rdir}/out-*.bin)")
                sample = []
                for k, remote in enumerate(remotes):
                    local = tmp / f"out{i}-{k}.bin"
                    self.pull(remote, local)
                    sample.append(_loaded(local, out_specs[k] if k < len(out_specs) else None))
                outputs.append(sample)
        if not outputs:
            return AgentRun(True, {**result, "ok": True, "accuracy_error": "not measured: no inputs"}, None, None)
        stacked = [np.stack([s[k] for s in outputs]) for k in range(len(outputs[0]))]
        result["samples"] = len(outputs)
        return AgentRun(True, {**result, "ok": True}, stacked, None)


def _tensor_specs(signature: dict | None, side: str) -> list[dict]:
    """The manifest's I/O entries as the runners' specs: {"dtype", "quantization", "shape"}."""
    specs = []
    for entry in (signature or {}).get(side) or []:
        dtype = str(entry.get("dtype") or "float32")
        quant = entry.get("quantization") if dtype in ("int8", "uint8", "int16") else None
        specs.append({"dtype": dtype, "quantization": quant, "shape": entry.get("shape")})
    return specs


def _stored(x: np.ndarray, spec: dict | None) -> np.ndarray:
    """A float sample as the program stores it: quantized for integer inputs."""
    return to_stored(x, spec) if spec else x.astype(np.float32)


def _loaded(path: Path, spec: dict | None) -> np.ndarray:
    """An output file's raw bytes as float32: dequantized for integer outputs."""
    if not spec:
        return np.fromfile(path, dtype=np.float32)
    y = np.fromfile(path, dtype=spec["dtype"])
    return from_stored(y, spec).astype(np.float32)


