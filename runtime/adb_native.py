""".tflite, .pte and .onnx on an adb device through edgeship's own aarch64 native runners, with a
glibc pushed beside them.

The runners (native_build.py: pte_runner, litert_runner, ort_runner) are glibc programs
(aarch64-linux-gnu-g++, rpath $ORIGIN/lib); Android's libc is bionic. So the runner's folder on
the device carries a glibc too: the dynamic loader (ld-linux-aarch64.so.1) and every library the
runner and the wheel's libraries need, found by following their DT_NEEDED entries (readelf -d)
into the cross toolchain's /usr/aarch64-linux-gnu/lib (what the runners were linked against),
else the emulated Pi's root filesystem. The folder goes to /data/local/tmp/edgeship/native-<build
key>/ (the runner + lib/), each file checked by sha256 on the device, so a second run pushes
nothing; the model goes to models/<sha256>/ the same way. The runner is started through the
pushed loader, never the device's:

    <dir>/lib/ld-linux-aarch64.so.1 --library-path <dir>/lib <dir>/<runner> ARGS

so nothing of the device's own libc is used (the runner's PT_INTERP, /lib/ld-linux-aarch64.so.1,
does not exist on Android). Inputs go in, and outputs come back, as raw tensor files, with
native.py's protocol (native_args, write_inputs, finish); the runner's JSON report says what ran
(runtime, delegate).

Proven on the arm64 test device only (a Debian chroot under QEMU behind a test adb server), not
on Android hardware. On Android it needs /data/local/tmp to allow exec (it does for `adb shell`)
and the pushed loader to be started explicitly, as here.

    run(device, artifact, inputs, signature, ...) -> AgentRun
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from edgeship.errors import DeviceError, DeviceUnreachable
from edgeship.hashing import sha256_file
from edgeship.runtime import native, native_build, rootfs
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout

REMOTE_DIR = "/data/local/tmp/edgeship"  # adb.REMOTE_DIR (adb.py imports this module)
LOADER = "ld-linux-aarch64.so.1"
TOOLCHAIN_LIB = Path("/usr/aarch64-linux-gnu/lib")  # Debian's libc6-arm64-cross / libstdc++6-arm64-cross
FORMATS = {spec.fmt: kind for kind, spec in native_build.SPECS.items()}  # ".pte" -> "pte", ...


def glibc_dirs() -> list[Path]:
    """Where the pushed glibc comes from, in order: the cross toolchain the runners were built
    with, then the emulated Pi's root filesystem (the same Debian release's glibc)."""
    dirs = [TOOLCHAIN_LIB]
    root = rootfs.cached_rootfs()
    if root is not None:
        dirs += [root / "lib" / "aarch64-linux-gnu", root / "usr" / "lib" / "aarch64-linux-gnu"]
    return [d for d in dirs if d.is_dir()]


def needed(path: Path) -> list[str]:
    """PATH's DT_NEEDED entries (readelf -d)."""
    readelf = shutil.which("aarch64-linux-gnu-readelf") or shutil.which("readelf")
    if readelf is None:
        raise native_build.NativeUnavailable("readelf not found (apt-get install binutils-aarch64-linux-gnu): "
                                             "edgeship reads the runners' DT_NEEDED to know which glibc files to push")
    p = subprocess.run([readelf, "-d", "-W", str(path)], check=False, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise native_build.NativeUnavailable(f"readelf -d {path.name} failed: {last(p.stderr)}")
    return [ln.split("[", 1)[1].split("]", 1)[0] for ln in p.stdout.splitlines() if "(NEEDED)" in ln]


def last(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def bundle(runner: native_build.NativeRunner) -> dict[str, Path]:
    """What the device's runner folder holds: {relative path: local file}. The runner, the
    wheel's libraries, and the glibc files they need (recursively), the loader always."""
    files = {runner.binary.name: runner.binary}
    files.update({f"lib/{f.name}": f for f in runner.files()[1:]})
    dirs = glibc_dirs()
    todo, seen = [f for f in files.values()], set()
    todo_names = [LOADER]
    while todo or todo_names:
        if todo:
            todo_names += needed(todo.pop())
            continue
        name = todo_names.pop()
        if name in seen or f"lib/{name}" in files:
            continue
        seen.add(name)
        found = next((d / name for d in dirs if (d / name).exists()), None)
        if found is None:
            where = ", ".join(str(d) for d in dirs) or f"{TOOLCHAIN_LIB} (missing)"
            raise native_build.NativeUnavailable(f"{name} (needed by the native {runner.binary.name}) not found in "
                                                 f"{where}: adb pushes a glibc with the runner "
                                                 f"({native_build.CROSS_APT})")
        files[f"lib/{name}"] = found.resolve()  # the file under its soname, not the symlink
        todo.append(found.resolve())
    return files


def remote_dir(runner: native_build.NativeRunner) -> str:
    return f"{REMOTE_DIR}/native-{runner.binary.parent.name}"


def checksums(device, paths: list[str]) -> dict[str, str]:
    """sha256 of each remote path that exists (toybox's sha256sum on Android, coreutils' here)."""
    _, out = device.shell("sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null; true",
                          timeout=300)
    pairs = (line.split(None, 1) for line in out.splitlines())
    return {p[1].strip().lstrip("*"): p[0] for p in pairs if len(p) == 2 and len(p[0]) == 64}


def push_checked(device, files: dict[str, Path], rdir: str, executables: tuple[str, ...] = ()) -> bool:
    """FILES ({relative: local}) into RDIR on the device unless every one is there with the same
    sha256; staged in a sibling folder and moved in whole. Returns whether anything was pushed."""
    expected = {f"{rdir}/{rel}": sha256_file(f) for rel, f in files.items()}
    if checksums(device, list(expected)) == expected:
        return False
    tmp = f"{rdir}.tmp-{uuid.uuid4().hex[:8]}"
    rc, out = device.shell(f"rm -rf {shlex.quote(tmp)} && mkdir -p {shlex.quote(tmp)}/lib")
    if rc:
        raise DeviceError(f"{device.uri}: mkdir {tmp}: {last(out)}")
    for rel, f in files.items():
        device.push(f, f"{tmp}/{rel}")
    staged = {p.replace(rdir, tmp, 1): h for p, h in expected.items()}
    got = checksums(device, list(staged))
    bad = [p for p, h in staged.items() if got.get(p) != h]
    if bad:
        device.shell(f"rm -rf {shlex.quote(tmp)}")
        raise DeviceError(f"{device.uri}: checksum mismatch after pushing {', '.join(bad)}",
                          hint="the copy was corrupted or the phone's storage is full (edgeship devices doctor adb)")
    chmod = " ".join(shlex.quote(f"{tmp}/{rel}") for rel in executables)
    rc, out = device.shell((f"chmod 755 {chmod} && " if chmod else "") + f"rm -rf {shlex.quote(rdir)} && mv {shlex.quote(tmp)} {shlex.quote(rdir)}")
    if rc:
        raise DeviceError(f"{device.uri}: could not move {tmp} to {rdir}: {last(out)}")
    return True


def push_runner(device, runner: native_build.NativeRunner) -> tuple[str, bool]:
    """The runner folder on the device (pushed when missing or different) and whether it was pushed."""
    files = bundle(runner)
    rdir = remote_dir(runner)
    if LOADER not in {Path(r).name for r in files}:
        raise native_build.NativeUnavailable(f"no {LOADER} to push with {runner.binary.name}")
    return rdir, push_checked(device, files, rdir, (runner.binary.name, f"lib/{LOADER}"))


def push_model(device, artifact: Path) -> str:
    """The model under models/<sha256>/ on the device, pushed only when missing or different."""
    rdir = f"{REMOTE_DIR}/models/{sha256_file(artifact)[:16]}"
    push_checked(device, {artifact.name: artifact}, rdir)
    return f"{rdir}/{artifact.name}"


def command(rdir: str, binary: str, args: list[str]) -> str:
    """The runner started through the pushed loader: nothing of the device's libc is used."""
    return (f"{rdir}/lib/{LOADER} --library-path {rdir}/lib {rdir}/{binary} "
            + " ".join(shlex.quote(a) for a in args))


def run(device, artifact: Path, inputs, signature, *, threads=1, warmup=5, runs=50, timeout=300.0) -> AgentRun:
    """ARTIFACT (.pte, .tflite or .onnx) through edgeship's aarch64 runner on DEVICE (an AdbDevice)."""
    artifact = Path(artifact)
    kind = FORMATS.get(artifact.suffix)
    if kind is None:
        return AgentRun(False, {}, None, f"edgeship's native runners on adb run .pte, .tflite and .onnx, not "
                                         f"{artifact.suffix}")
    base = {"device": device.uri, "emulated": device.emulated, "threads": threads,
            "platform": {"runner": "native"}}
    try:
        runner = native_build.ensure_runner("aarch64", kind)
        rdir, pushed = push_runner(device, runner)
    except native_build.NativeUnavailable as e:
        spec = native_build.SPECS[kind]
        return AgentRun(False, base, None, f"{spec.fmt} on adb: {e.message}; or pass --runner PATH (the user's own "
                                           "benchmark_model / executor_runner)")
    remote_model = push_model(device, artifact)
    run_dir = f"{REMOTE_DIR}/runs/{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="edgeship-adb-native-") as tmp:
        tmp = Path(tmp)
        files = native.write_inputs(tmp, inputs)
        rc, out = device.shell(f"mkdir -p {run_dir}/out")
        if rc:
            return AgentRun(False, base, None, f"mkdir {run_dir}: {last(out)}")
        try:
            for p, _ in files:
                device.push(p, f"{run_dir}/{p.name}")
            n = int(inputs[0].shape[0]) if inputs else 0
            args = native.native_args(remote_model, [(f"{run_dir}/{p.name}", d) for p, d in files], f"{run_dir}/out",
                                      n, signature, threads=threads, warmup=warmup, runs=runs,
                                      max_seconds=max(1.0, timeout / 4), kind=kind,
                                      shapes=native.sample_shapes(inputs))
            try:
                rc, out = device.shell(f"cd {run_dir} && timeout -s KILL {int(timeout)} "
                                       + command(rdir, runner.binary.name, args), timeout=timeout + 60)
            except DeviceUnreachable as e:
                return AgentRun(False, base, None, e.message)
            if rc in (124, 137):
                return AgentRun(False, base, None, f"timed out after {timeout:.0f} s on {device.uri} "
                                                   "(the native runner hung or is too slow)")
            code = -(rc - 128) if 128 < rc < 160 else rc  # the device's shell reports 128 + signal
            report = parse_agent_stdout(out)
            (tmp / "out").mkdir()
            if report and report.get("ok"):
                for k in range(len(report.get("outputs", []))):
                    device.pull(f"{run_dir}/out/output_{k}.bin", tmp / "out" / f"output_{k}.bin")
            got = native.finish(code if not report else 0 if report.get("ok") else 1, out, out, artifact,
                                tmp / "out", signature)
        finally:
            device.shell(f"rm -rf {run_dir}", timeout=60)
    got.result = {**base, **got.result, "runner": runner.binary.name,
                  "loader": f"pushed glibc loader ({rdir}/lib/{LOADER})", "pushed_runner": pushed,
                  "platform": dict(got.result.get("platform") or {}, runner="native")}
    return got


def probe(device, kind: str = "pte") -> dict:
    """The runner of KIND on the device as doctor shows it: pushed (when missing or different) and
    asked `--probe` through the pushed loader, so doctor shows whether the phone runs it at all."""
    try:
        runner = native_build.ensure_runner("aarch64", kind)
        rdir, _ = push_runner(device, runner)
    except native_build.NativeUnavailable as e:
        return native.probe_native(None, e.message)
    except (DeviceError, DeviceUnreachable) as e:
        return {"available": False, "reason": e.message}
    rc, out = device.shell("timeout -s KILL 120 " + command(rdir, runner.binary.name, ["--probe"]), timeout=180)
    report = parse_agent_stdout(out)
    if not report or not report.get("ok"):
        code = -(rc - 128) if 128 < rc < 160 else rc
        return {"available": False, "reason": describe_exit(code, out)}
    return native.available(report, location=rdir, loader=f"{rdir}/lib/{LOADER}")
