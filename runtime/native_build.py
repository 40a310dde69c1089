"""Build edgeship's native runners at first use: the ExecuTorch one (runtime/native/pte_runner.cpp),
the LiteRT one (runtime/native/litert_runner.cpp, `ensure_runner(target, kind="litert")`) and the
ONNX Runtime one (runtime/native/ort_runner.cpp, `kind="ort"`).

The runner links the executorch wheel's own shared libraries (runtime core + Module extension,
XNNPACK, optimized and quantized kernels, threadpool, ETDump), none of which needs torch:

- host: the system C++ compiler (`g++`, or $CXX) against the installed executorch package;
- aarch64 (emulated and real Pis): `aarch64-linux-gnu-g++` against the manylinux_2_28 aarch64
  wheel of the same executorch version, fetched once by pip into ~/.cache/edgeship/wheels/.

Both runners include runtime/native/runner_common.h (the agent protocol they share) and build
through one `ensure_runner`, each described by a RunnerSpec (SPECS). Builds are cached under
~/.cache/edgeship/native/<hash of source and header, runtime version, target>/:
`pte_runner` and, for aarch64, `lib/` with the wheel's libraries (the runner's rpath is
$ORIGIN/lib, so the folder can be pushed to a device as it is). A host without a compiler keeps
the Python runner for .pte and says so once (NativeUnavailable carries the reason).

The LiteRT runner links the ai-edge-litert wheel's libLiteRt.so (its C API, which needs only
libc/libm/libstdc++/libgcc_s/libdl/librt/libpthread): on the host the installed package's, for
aarch64 the manylinux aarch64 wheel of the same version (the one `devices setup emu:*` already
cached under ~/.cache/edgeship/wheels/, else fetched by pip). Its cache folder holds
`litert_runner` and `lib/libLiteRt.so` for aarch64, pushed to a device as it is.

The ONNX Runtime runner (runtime/native/ort_runner.cpp, `kind="ort"`) links the onnxruntime
wheel's libonnxruntime.so (its C API through OrtGetApiBase, declared in the source: the wheel has
no header; it needs only libc/libm/libstdc++/libgcc_s/libdl/librt/libpthread). The library's
soname is libonnxruntime.so.1 and the wheel ships only libonnxruntime.so.<version>, so each target
gets a folder holding it as `libonnxruntime.so.1`: on the host a symlink to the installed package's
file (~/.cache/edgeship/wheels/onnxruntime-<version>-host-<hash of its path>/), for aarch64 the
manylinux aarch64 wheel's file, taken from the wheel the emulated Pi's Python side cached or
fetched by pip. The aarch64 cache folder holds `ort_runner` and `lib/libonnxruntime.so.1`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeship import context
from edgeship.console import info
from edgeship.errors import EdgeshipError, InputError
from edgeship.runtime.rootfs import cache_root

SOURCE = Path(__file__).resolve().parent / "native" / "pte_runner.cpp"
LITERT_SOURCE = Path(__file__).resolve().parent / "native" / "litert_runner.cpp"
ORT_SOURCE = Path(__file__).resolve().parent / "native" / "ort_runner.cpp"
# the headers the runners include (runner_common.h: every runner; et_threadpool.h: the .pte runner)
HEADERS = tuple(sorted((Path(__file__).resolve().parent / "native").glob("*.h")))
TARGETS = ("host", "aarch64")
KINDS = ("pte", "litert", "ort")
LIBS = ("executorch", "executorch_backend_xnnpack", "executorch_kernels_optimized", "executorch_kernels_quantized",
        "executorch_threadpool", "executorch_etdump")
CROSS_CXX = "aarch64-linux-gnu-g++"
CROSS_APT = "apt-get install g++-aarch64-linux-gnu"
ENV_RUNTIME = "EDGESHIP_PTE_RUNTIME"  # the user's default: native (default) | python
ENV_TFLITE_RUNTIME = "EDGESHIP_TFLITE_RUNTIME"  # the same for .tflite
ENV_ONNX_RUNTIME = "EDGESHIP_ONNX_RUNTIME"  # the same for .onnx
PTE_RUNTIMES = context.PTE_RUNTIMES
ONNX_RUNTIMES = ("native", "python")
LITERT_LIB = "libLiteRt.so"
ORT_LIB = "libonnxruntime.so.1"  # the library's soname, what the runner's DT_NEEDED names
_said: set[str] = set()


class NativeUnavailable(EdgeshipError):
    """The native runner cannot be built here (no compiler, no executorch libraries)."""


@dataclass(frozen=True)
class NativeRunner:
    binary: Path
    lib_dir: Path  # the executorch (or LiteRT) libraries it runs against
    target: str
    version: str  # executorch (or ai-edge-litert) version it was built against
    kind: str = "pte"

    @property
    def runtime(self) -> str:
        return f"{SPECS[self.kind].runtime}-native {self.version}"

    def files(self) -> list[Path]:
        """The runner and its libraries: what a device needs."""
        return [self.binary] + [self.lib_dir / name for name in SPECS[self.kind].libs]


def executorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch").split("+")[0]
    except PackageNotFoundError:
        raise NativeUnavailable("executorch is not installed on this host: no libraries to build the native "
                                "runner against") from None


def host_executorch_dir() -> Path:
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise NativeUnavailable("executorch is not installed on this host")
    et = Path(list(spec.submodule_search_locations)[0])
    if not (et / "lib" / "libexecutorch.so").is_file() or not (et / "include").is_dir():
        raise NativeUnavailable(f"the executorch package at {et} has no lib/libexecutorch.so or include/")
    return et


def aarch64_executorch_dir(version: str) -> Path:
    """The aarch64 wheel's executorch/{lib,include}, fetched once by pip and unpacked."""
    wheels = cache_root() / "wheels"
    dest = wheels / f"executorch-{version}-aarch64"
    if (dest / "executorch" / "lib" / "libexecutorch.so").is_file():
        return dest / "executorch"
    wheels.mkdir(parents=True, exist_ok=True)
    with _lock(wheels / ".executorch-aarch64.lock"):
        found = sorted(wheels.glob(f"executorch-{version}-*manylinux*aarch64.whl"))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--platform",
                   "manylinux_2_28_aarch64", "--python-version", "3.11", f"executorch=={version}", "-d", str(wheels)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            found = sorted(wheels.glob(f"executorch-{version}-*manylinux*aarch64.whl"))
            if p.returncode != 0 or not found:
                last = (p.stderr or p.stdout).strip().splitlines()
                raise NativeUnavailable(f"could not fetch the aarch64 executorch {version} wheel: "
                                        f"{last[-1] if last else p.returncode}")
        stage = Path(tempfile.mkdtemp(prefix=".unpack-", dir=wheels))
        with zipfile.ZipFile(found[-1]) as z:
            for name in z.namelist():
                if name.startswith(("executorch/lib/", "executorch/include/")):
                    z.extract(name, stage)
        shutil.rmtree(dest, ignore_errors=True)
        stage.rename(dest)
    return dest / "executorch"


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert").split("+")[0]
    except PackageNotFoundError:
        raise NativeUnavailable("ai-edge-litert is not installed on this host: no libLiteRt.so to build the native "
                                "LiteRT runner against") from None


def host_litert_dir() -> Path:
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        raise NativeUnavailable("ai-edge-litert is not installed on this host")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / LITERT_LIB).is_file():
        raise NativeUnavailable(f"the ai-edge-litert package at {d} has no {LITERT_LIB}")
    return d


def aarch64_litert_dir(version: str) -> Path:
    """The aarch64 wheel's ai_edge_litert/libLiteRt.so, unpacked once: from the wheel `devices setup
    emu:*` cached, else fetched by pip."""
    return _aarch64_wheel_lib("ai-edge-litert", "ai_edge_litert", version, "manylinux_2_27_aarch64",
                              lambda names: f"ai_edge_litert/{LITERT_LIB}" if f"ai_edge_litert/{LITERT_LIB}" in names
                              else None, LITERT_LIB, f"ai_edge_litert/{LITERT_LIB}")


def _aarch64_wheel_lib(dist: str, wheel_name: str, version: str, platform: str, member, lib_name: str,
                       member_said: str) -> Path:
    """A shared library out of DIST's aarch64 wheel, unpacked once into ~/.cache/edgeship/wheels/
    DIST-VERSION-aarch64/LIB_NAME: from a wheel already cached there (`devices setup emu:*` caches
    them), else fetched by pip for PLATFORM. MEMBER picks the library's path among the wheel's names
    (None: not there)."""
    wheels = cache_root() / "wheels"
    dest = wheels / f"{dist}-{version}-aarch64"
    if (dest / lib_name).is_file():
        return dest
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{wheel_name}-{version}-*manylinux*aarch64.whl"
    with _lock(wheels / f".{dist}-aarch64.lock"):
        found = sorted(wheels.glob(pattern)) + sorted(wheels.glob(f"*/{pattern}"))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--platform",
                   platform, "--python-version", "3.11", f"{dist}=={version}", "-d", str(wheels)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            found = sorted(wheels.glob(pattern))
            if p.returncode != 0 or not found:
                last = (p.stderr or p.stdout).strip().splitlines()
                raise NativeUnavailable(f"could not fetch the aarch64 {dist} {version} wheel: "
                                        f"{last[-1] if last else p.returncode}")
        with zipfile.ZipFile(found[-1]) as z:
            name = member(z.namelist())
            if name is None:
                raise NativeUnavailable(f"the aarch64 {dist} wheel {found[-1].name} has no {member_said}")
            stage = Path(tempfile.mkdtemp(prefix=".unpack-", dir=wheels))
            (stage / lib_name).write_bytes(z.read(name))
        shutil.rmtree(dest, ignore_errors=True)
        stage.rename(dest)
    return dest


def ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime").split("+")[0]
    except PackageNotFoundError:
        raise NativeUnavailable("onnxruntime is not installed on this host: no libonnxruntime.so to build the native "
                                "ONNX Runtime runner against") from None


def _ort_file(folder: Path, version: str) -> Path | None:
    found = sorted(folder.glob(f"libonnxruntime.so.{version}")) or sorted(folder.glob("libonnxruntime.so.1*"))
    return found[-1] if found else None


def host_ort_dir(version: str) -> Path:
    """A folder holding the installed onnxruntime's library as libonnxruntime.so.1 (a symlink)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise NativeUnavailable("onnxruntime is not installed on this host")
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    lib = _ort_file(capi, version)
    if lib is None:
        raise NativeUnavailable(f"the onnxruntime package at {capi.parent} has no capi/libonnxruntime.so.*")
    lib = lib.resolve()
    dest = cache_root() / "wheels" / f"onnxruntime-{version}-host-{hashlib.sha256(str(lib).encode()).hexdigest()[:12]}"
    if (dest / ORT_LIB).resolve() == lib:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".ort-", dir=dest.parent))
    (stage / ORT_LIB).symlink_to(lib)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        stage.rename(dest)
    except OSError:  # another process made it first
        shutil.rmtree(stage, ignore_errors=True)
    return dest


def aarch64_ort_dir(version: str) -> Path:
    """The aarch64 wheel's onnxruntime/capi/libonnxruntime.so.<version> as libonnxruntime.so.1, unpacked
    once: from the wheel the emulated Pi's Python side cached, else fetched by pip."""
    def member(names):
        libs = [n for n in names if n.startswith("onnxruntime/capi/libonnxruntime.so.")]
        return max(libs) if libs else None

    return _aarch64_wheel_lib("onnxruntime", "onnxruntime", version, "manylinux_2_28_aarch64", member, ORT_LIB,
                              "capi/libonnxruntime.so.*")


def compiler(target: str) -> str | None:
    if target == "host":
        return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    return shutil.which(CROSS_CXX)


def compile_command(cxx: str, source: Path, out: Path, et: Path, rpath: str, version: str) -> list[str]:
    """g++ against the executorch package at ET (include/, lib/), every runtime library linked."""
    return [cxx, "-O2", "-std=c++17", str(source), "-o", str(out), f'-DEDGESHIP_ET_VERSION="{version}"',
            "-DEDGESHIP_ETDUMP", "-Wno-deprecated-declarations", f"-I{et / 'include'}",
            f"-I{et / 'include/executorch/runtime/core/portable_type/c10'}", "-DC10_USING_CUSTOM_GENERATED_MACROS",
            f"-L{et / 'lib'}", f"-Wl,-rpath,{rpath}", "-Wl,--no-as-needed", *(f"-l{name}" for name in LIBS)]


def litert_compile_command(cxx: str, source: Path, out: Path, lib_dir: Path, rpath: str, version: str) -> list[str]:
    """g++ against LIB_DIR/libLiteRt.so (its C API, declared in the source: the wheel has no headers)."""
    return [cxx, "-O2", "-std=c++17", str(source), "-o", str(out), f'-DEDGESHIP_LITERT_VERSION="{version}"',
            f"-L{lib_dir}", f"-Wl,-rpath,{rpath}", f"-l:{LITERT_LIB}"]


def ort_compile_command(cxx: str, source: Path, out: Path, lib_dir: Path, rpath: str, version: str) -> list[str]:
    """g++ against LIB_DIR/libonnxruntime.so.1 (its C API, declared in the source: the wheel has no header);
    the C API version asked for is the release's minor number (1.31 -> 31)."""
    api = version.split(".")[1] if version.count(".") >= 1 and version.split(".")[1].isdigit() else "1"
    return [cxx, "-O2", "-std=c++17", str(source), "-o", str(out), f'-DEDGESHIP_ORT_VERSION="{version}"',
            f"-DEDGESHIP_ORT_API_VERSION={api}", f"-L{lib_dir}", f"-Wl,-rpath,{rpath}", f"-l:{ORT_LIB}"]


@dataclass(frozen=True)
class RunnerSpec:
    """What differs between the runners' builds. ROOT is the runtime's files for a target (the
    executorch package, or the folder holding libLiteRt.so or libonnxruntime.so.1): `lib_dir(root)`
    holds the libraries the runner links, `libs` their file names, `command(cxx, source, out, root,
    rpath, version)` the compiler's command line."""

    kind: str
    source: Path
    binary: str
    title: str  # for messages: "ExecuTorch", "LiteRT"
    version: Callable[[], str]
    root: Callable[[str, str], Path]  # (target, version) -> root
    lib_dir: Callable[[Path], Path]
    libs: tuple[str, ...]
    command: Callable[[str, Path, Path, Path, str, str], list[str]]
    runtime: str  # the report's runtime name: "<runtime>-native <version>"
    fmt: str  # the format it runs: ".pte", ".tflite", ".onnx"
    python: str  # what runs that format instead when this runner cannot be built
    report_key: str  # its entry in a device's probe report (`devices doctor --json`): "executorch_native"
    python_key: str  # the Python runtime's entry in that report, from the standalone probe: "executorch"


SPECS = {
    "pte": RunnerSpec("pte", SOURCE, "pte_runner", "ExecuTorch", executorch_version,
                      lambda target, v: host_executorch_dir() if target == "host" else aarch64_executorch_dir(v),
                      lambda root: root / "lib", tuple(f"lib{name}.so" for name in LIBS), compile_command,
                      "executorch", ".pte", "ExecuTorch's Python runtime", "executorch_native", "executorch"),
    "litert": RunnerSpec("litert", LITERT_SOURCE, "litert_runner", "LiteRT", litert_version,
                         lambda target, v: host_litert_dir() if target == "host" else aarch64_litert_dir(v),
                         lambda root: root, (LITERT_LIB,), litert_compile_command,
                         "litert", ".tflite", "ai-edge-litert's Python interpreter", "litert_native", "tflite"),
    "ort": RunnerSpec("ort", ORT_SOURCE, "ort_runner", "ONNX Runtime", ort_version,
                      lambda target, v: host_ort_dir(v) if target == "host" else aarch64_ort_dir(v),
                      lambda root: root, (ORT_LIB,), ort_compile_command,
                      "onnxruntime", ".onnx", "onnxruntime's Python package", "ort_native", "onnxruntime"),
}


# SPECS is the one format -> runner table: every device's probe, `formats` report and run reads it, and
# runtime_choice says, per runner kind, whether the native runner or the Python runtime runs the format.


def runtime_choice(kind: str, choice: str | None = None) -> str:
    """'native' or 'python' for the format KIND's runner runs (pte_runtime, tflite_runtime, onnx_runtime)."""
    return {"pte": pte_runtime, "litert": tflite_runtime, "ort": onnx_runtime}[kind](choice)


def kind_for(artifact) -> str | None:
    """The native runner kind that runs ARTIFACT's format (SPECS' fmt), None for none."""
    suffix = Path(str(artifact)).suffix
    return next((k for k, spec in SPECS.items() if spec.fmt == suffix), None)


def build_key(target: str, version: str, root: Path, kind: str = "pte") -> str:
    """The cache folder's name: the runner's source and the headers beside it, the runtime's
    version, the target and (host) the installation its rpath points into."""
    h = hashlib.sha256(SPECS[kind].source.read_bytes())
    for header in HEADERS:
        h.update(header.read_bytes())
    if kind != "pte":
        h.update(f"\0{kind}".encode())
    h.update(f"\0{version}\0{target}\0".encode())
    if target == "host":  # the binary's rpath points into this installation
        h.update(str(root).encode())
    return h.hexdigest()[:16]


def ensure_runner(target: str = "host", kind: str = "pte") -> NativeRunner:
    """The cached runner of KIND ('pte' | 'litert' | 'ort') for TARGET, compiled now if missing. Raises
    NativeUnavailable."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown runner kind {kind!r}")
    spec = SPECS[kind]
    version = spec.version()
    cxx = compiler(target)
    if cxx is None:
        hint = CROSS_APT if target == "aarch64" else "apt-get install g++"
        raise NativeUnavailable(f"no C++ compiler for the native {spec.title} runner ({target}): "
                                f"{CROSS_CXX if target == 'aarch64' else 'g++'} not found ({hint})")
    root = spec.root(target, version)
    out = cache_root() / "native" / build_key(target, version, root, kind)
    runner = NativeRunner(out / spec.binary, spec.lib_dir(root) if target == "host" else out / "lib", target,
                          version, kind)
    if runner.binary.is_file():
        return runner
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out.parent / ".lock"):
        if runner.binary.is_file():
            return runner
        stage = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
        try:
            rpath = str(spec.lib_dir(root)) if target == "host" else "$ORIGIN/lib"
            p = subprocess.run(spec.command(cxx, spec.source, stage / spec.binary, root, rpath, version),
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                errors = [ln for ln in p.stderr.splitlines() if "error" in ln] or p.stderr.strip().splitlines()
                raise NativeUnavailable(f"building the native {spec.title} runner ({target}) failed: "
                                        f"{errors[0] if errors else p.returncode}")
            if target != "host":  # the libraries beside it, as a device gets them
                (stage / "lib").mkdir()
                for name in spec.libs:
                    shutil.copy2(spec.lib_dir(root) / name, stage / "lib" / name)
            shutil.rmtree(out, ignore_errors=True)
            stage.rename(out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return runner


def pte_runtime(choice: str | None = None) -> str:
    """'native' or 'python': the choice given (a device's own), else the running command's
    --pte-runtime (edgeship.context), else $EDGESHIP_PTE_RUNTIME, else native."""
    if choice:
        return context.check_pte_runtime(choice)
    if context.pte_runtime():
        return context.pte_runtime()
    if os.environ.get(ENV_RUNTIME):
        return context.check_pte_runtime(os.environ[ENV_RUNTIME], f"${ENV_RUNTIME}")
    return "native"


def tflite_runtime(choice: str | None = None) -> str:
    """'native' or 'python' for .tflite: the choice given (a device's own), else the running
    command's --tflite-runtime (edgeship.context), else $EDGESHIP_TFLITE_RUNTIME, else native."""
    if choice:
        return context.check_tflite_runtime(choice)
    if context.tflite_runtime():
        return context.tflite_runtime()
    if os.environ.get(ENV_TFLITE_RUNTIME):
        return context.check_tflite_runtime(os.environ[ENV_TFLITE_RUNTIME], f"${ENV_TFLITE_RUNTIME}")
    return "native"


def onnx_runtime(choice: str | None = None) -> str:
    """'native' or 'python' for .onnx: the choice given (a device's own), else $EDGESHIP_ONNX_RUNTIME,
    else native."""
    value, source = ((choice, "the device's .onnx runtime") if choice else
                     (os.environ.get(ENV_ONNX_RUNTIME), f"${ENV_ONNX_RUNTIME}"))
    if not value:
        return "native"
    value = value.strip().lower()
    if value not in ONNX_RUNTIMES:
        raise InputError(f"unknown .onnx runtime '{value}' (from {source}); choose {' or '.join(ONNX_RUNTIMES)}")
    return value


def runner_or_none(target: str = "host", kind: str = "pte") -> NativeRunner | None:
    """The native runner, or None after saying once why the Python runner is used instead."""
    try:
        return ensure_runner(target, kind)
    except NativeUnavailable as e:
        key = target if kind == "pte" else f"{kind}:{target}"
        if key not in _said:
            _said.add(key)
            spec = SPECS[kind]
            info(f"{e.message}; {spec.fmt} runs with {spec.python} instead")
        return None


class _lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
