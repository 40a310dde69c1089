""".pte, .tflite and .onnx on an ssh:// device through edgeship's native runners: no torch, no numpy,
no ai-edge-litert and no onnxruntime needed on the board for the run itself.

The aarch64 runner and the wheel's libraries it links (native_build.py: executorch's for .pte,
libLiteRt.so for .tflite, libonnxruntime for .onnx) are pushed once into ~/.edgeship/native-<build key>/ (the runner +
lib/), each file checked by sha256 on the device, then each run sends its inputs as raw tensor
files, runs the runner under `timeout -s KILL` and fetches the raw outputs, like the Python
agent's runs (ssh.py) but with no interpreter.

    run_pte(device, artifact, inputs, signature, ...) -> AgentRun | None     (None: use the Python agent)
    run_tflite(device, artifact, inputs, signature, ...) -> AgentRun | None
    run_onnx(device, artifact, inputs, signature, ...) -> AgentRun | None
"""

from __future__ import annotations

import shlex
import tempfile
import uuid
from pathlib import Path

from edgeship.errors import DeviceError
from edgeship.hashing import sha256_file
from edgeship.runtime import native, native_build
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout

HOME = ".edgeship"  # the same folder as ssh.HOME, relative to the login directory


def remote_dir(runner: native_build.NativeRunner) -> str:
    return f"{HOME}/native-{runner.binary.parent.name}"


def checksums(device, paths: list[str]) -> dict[str, str]:
    out = device.ssh("sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null || true").stdout
    return {line.split(None, 1)[1].strip().lstrip("*"): line.split(None, 1)[0] for line in out.splitlines()
            if len(line.split(None, 1)) == 2}


def push_runner(device, runner: native_build.NativeRunner) -> str:
    """The runner folder on the device (pushed when missing or different); returns its path."""
    rdir = remote_dir(runner)
    name = runner.binary.name
    local = {f"{rdir}/{name if f == runner.binary else 'lib/' + f.name}": f for f in runner.files()}
    expected = {p: sha256_file(f) for p, f in local.items()}
    if checksums(device, list(expected)) == expected:
        return rdir
    tmp = f"{rdir}.tmp-{uuid.uuid4().hex[:8]}"
    device.ssh(f"mkdir -p {tmp}/lib")
    device.scp([str(runner.binary)], device.remote(f"{tmp}/{name}"))
    device.scp([str(f) for f in runner.files()[1:]], device.remote(f"{tmp}/lib/"))
    staged = {p.replace(rdir, tmp, 1): h for p, h in expected.items()}
    got = checksums(device, list(staged))
    bad = [p for p, h in staged.items() if got.get(p) != h]
    if bad:
        device.ssh(f"rm -rf {tmp}", check=False)
        raise DeviceError(f"{device.uri}: checksum mismatch after copying {', '.join(bad)} to the device",
                          hint="the copy was corrupted or the device's disk is full (edgeship devices doctor)")
    device.ssh(f"chmod +x {tmp}/{name} && rm -rf {rdir} && mv {tmp} {rdir}")
    return rdir


def ready_runner(device, kind: str = "pte") -> native_build.NativeRunner | None:
    """The aarch64 runner of KIND when that format's runtime is native and this host can build it."""
    if kind == "litert":
        if native_build.tflite_runtime(getattr(device, "tflite_runtime", None)) != "native":
            return None
    elif kind == "ort":
        if native_build.onnx_runtime(getattr(device, "onnx_runtime", None)) != "native":
            return None
    elif native_build.pte_runtime(getattr(device, "pte_runtime", None)) != "native":
        return None
    return native_build.runner_or_none("aarch64", kind)


def run_pte(device, artifact: Path, inputs, signature, *, threads=1, warmup=5, runs=50, timeout=300.0) -> AgentRun | None:
    return run_native_remote(device, artifact, inputs, signature, "pte", threads=threads, warmup=warmup, runs=runs,
                             timeout=timeout)


def run_tflite(device, artifact: Path, inputs, signature, *, threads=1, warmup=5, runs=50,
               timeout=300.0) -> AgentRun | None:
    return run_native_remote(device, artifact, inputs, signature, "litert", threads=threads, warmup=warmup, runs=runs,
                             timeout=timeout)


def run_onnx(device, artifact: Path, inputs, signature, *, threads=1, warmup=5, runs=50,
             timeout=300.0) -> AgentRun | None:
    return run_native_remote(device, artifact, inputs, signature, "ort", threads=threads, warmup=warmup, runs=runs,
                             timeout=timeout)


def run_native_remote(device, artifact: Path, inputs, signature, kind: str, *, threads=1, warmup=5, runs=50,
                      timeout=300.0) -> AgentRun | None:
    runner = ready_runner(device, kind)
    if runner is None:
        return None
    rdir = push_runner(device, runner)
    remote_artifact = device.push_artifact(Path(artifact))
    run_dir = f"{HOME}/runs/{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="edgeship-ssh-native-") as tmp:
        tmp = Path(tmp)
        files = native.write_inputs(tmp, inputs)
        device.ssh(f"mkdir -p {run_dir}/out")
        device.scp([str(p) for p, _ in files], device.remote(run_dir + "/"))
        expected = {f"{run_dir}/{p.name}": sha256_file(p) for p, _ in files}
        if checksums(device, list(expected)) != expected:
            return AgentRun(False, {"platform": {"runner": "native"}}, error="inputs were corrupted on the way to the device")
        n = int(inputs[0].shape[0])
        args = native.native_args(f"$HOME/{remote_artifact}", [(p.name, d) for p, d in files], "out", n, signature,
                                  threads=threads, warmup=warmup, runs=runs, max_seconds=max(1.0, timeout / 4),
                                  kind=kind, shapes=native.sample_shapes(inputs))
        cmd = (f"cd {run_dir} && timeout -s KILL {int(timeout)} $HOME/{rdir}/{runner.binary.name} "
               + " ".join(a if a.startswith("$HOME/") else shlex.quote(a) for a in args))
        try:
            proc = device.ssh(cmd, timeout=timeout + 60, check=False)
            report = parse_agent_stdout(proc.stdout)
            if report is None:
                if proc.returncode in (124, 137):
                    return AgentRun(False, {"platform": {"runner": "native"}}, error=f"timed out after {timeout:.0f} s "
                                    f"on {device.host} (the native runner hung or is too slow)")
                code = proc.returncode
                code = -(code - 128) if 128 < code < 160 else code  # the remote shell reports 128 + signal
                return AgentRun(False, {"platform": {"runner": "native"}}, error=describe_exit(code, proc.stderr))
            if report.get("ok"):
                outs = [f"{run_dir}/out/output_{k}.bin" for k in range(len(report.get("outputs", [])))]
                (tmp / "out").mkdir()
                if outs:
                    device.scp([device.remote(p) for p in outs], str(tmp / "out") + "/")
            return native.finish(0 if report.get("ok") else 1, proc.stdout, proc.stderr, artifact, tmp / "out",
                                 signature)
        finally:
            device.ssh(f"rm -rf {run_dir}", timeout=60, check=False)


def probe(device, kind: str = "pte") -> dict:
    """The native runner of KIND on the device as doctor shows it (pushed first when this host can
    build it)."""
    try:
        runner = native_build.ensure_runner("aarch64", kind)
    except native_build.NativeUnavailable as e:
        return native.probe_native(None, e.message)
    rdir = push_runner(device, runner)
    proc = device.ssh(f"$HOME/{rdir}/{runner.binary.name} --probe", timeout=120, check=False)
    report = parse_agent_stdout(proc.stdout)
    if not report or not report.get("ok"):
        return {"available": False, "reason": describe_exit(proc.returncode, proc.stderr)}
    return native.available(report, location=f"~/{rdir}")
