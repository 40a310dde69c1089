"""The emulated Raspberry Pi's root filesystem: Debian bookworm arm64, built once and cached.

    path = ensure_rootfs(progress=callback)        # builds when missing, else returns the cached one
    site = ensure_python_side(progress=callback)   # the guest's Python packages, only when asked

Built with debootstrap (minbase, python3, python3-venv, python3-pip), then: the host's CA bundle
and resolv.conf copied in, and a stub /sys holding only devices/system/cpu/{possible,present}
(XNNPACK is skipped without them and the host's /sys makes it crash). No Python package goes into
it: .tflite and .pte run through edgeship's aarch64 native runners (native_build.py), which need
only the rootfs's libc and libstdc++. The cache folder is keyed by a hash of all that
(`~/.cache/edgeship/rootfs/bookworm-arm64-<key>`; EDGESHIP_CACHE moves it), and a folder appears
there only when complete: a failed or interrupted build leaves nothing behind. The build needs
root (debootstrap) and qemu-aarch64 registered with binfmt_misc (done here when missing); running
the result does not (see emulated.py).

A root filesystem built by an older edgeship (builder 1, with numpy and ai-edge-litert installed
into it) is not built again: the new one is derived from it in seconds, hard-linked (`cp -al`),
with its Python packages left out.

The Python side (numpy, ai-edge-litert, onnxruntime: what .onnx and --tflite-runtime python need)
is a folder beside the root filesystem, `python-cp311-<key>/`, filled by the host's pip with the
aarch64 wheels of the host's own versions (`pip install --platform ... --target`) and put on the
guest Python's path (PYTHONPATH) by emulated.py; the root filesystem itself stays free of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgeship.errors import EdgeshipError

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"  # EDGESHIP_DEBIAN_MIRROR overrides
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
GUEST_PYTHON = "3.11"  # bookworm's
SITE = f"usr/local/lib/python{GUEST_PYTHON}/dist-packages"
BUILDER_VERSION = 2  # 1: numpy and ai-edge-litert installed into the rootfs
MARKER = ".edgeship-rootfs.json"
QEMU = "qemu-aarch64-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
APT_HINT = "apt-get install qemu-user-static debootstrap"


class SetupError(EdgeshipError):
    """A device could not be prepared (missing host tools, a failed download, a failed build)."""


def cache_root() -> Path:
    return Path(os.environ.get("EDGESHIP_CACHE") or Path.home() / ".cache" / "edgeship")


def host_version(dist: str, fallback: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return fallback


def recipe() -> dict:
    return {"suite": SUITE, "arch": "arm64", "variant": "minbase", "packages": list(PACKAGES),
            "python": GUEST_PYTHON, "builder": BUILDER_VERSION}


def python_wheels() -> list[str]:
    """The Python side's pins: the host's own versions."""
    return [f"numpy=={host_version('numpy', '2.2.6')}",
            f"ai-edge-litert=={host_version('ai-edge-litert', '2.3.0').split('+')[0]}",
            f"onnxruntime=={host_version('onnxruntime', '1.31.0').split('+')[0]}"]


def rootfs_path() -> Path:
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / "rootfs" / f"{SUITE}-arm64-{key}"


def cached_rootfs() -> Path | None:
    path = rootfs_path()
    return path if (path / MARKER).is_file() else None


def usable_rootfs() -> Path | None:
    """The cached root filesystem; derived first (seconds) from an older builder's when only that
    exists; None when neither does (`edgeship devices setup emu:rpi4` builds it)."""
    path = cached_rootfs()
    if path is None and legacy_rootfs() is not None:
        path, _ = ensure_rootfs()
    return path


def python_side_path() -> Path:
    """The folder of the guest's Python packages (present or not), keyed by the pins."""
    key = hashlib.sha256(json.dumps([GUEST_PYTHON, *python_wheels()]).encode()).hexdigest()[:12]
    return cache_root() / "rootfs" / f"python-cp{GUEST_PYTHON.replace('.', '')}-aarch64-{key}"


def cached_python_side() -> Path | None:
    """The guest's Python packages when they were installed (setup --with-python, or a first run
    that needed them), else None."""
    path = python_side_path()
    return path if (path / MARKER).is_file() else None


def ensure_python_side(progress=None) -> tuple[Path, bool]:
    """(folder, installed now): numpy, ai-edge-litert and onnxruntime for aarch64 CPython
    GUEST_PYTHON, installed by the host's pip when missing. Raises SetupError."""
    final = python_side_path()
    if (final / MARKER).is_file():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".python.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / MARKER).is_file():
            return final, False
        if progress:
            progress(0, 1, f"install aarch64 {', '.join(w.split('==')[0] for w in python_wheels())} (the Python side)")
        stage = final.parent / f".{final.name}.partial-{os.getpid()}"
        log = final.parent / f"{final.name}.log"
        log.write_text("")
        t0 = time.monotonic()
        try:
            _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(stage),
                  *pip_platform_args(GUEST_PYTHON), *python_wheels()], log, "installing the aarch64 wheels")
            (stage / MARKER).write_text(json.dumps({"python": GUEST_PYTHON, "wheels": python_wheels(),
                                                    "installed_seconds": round(time.monotonic() - t0, 1)}))
            shutil.rmtree(final, ignore_errors=True)
            stage.rename(final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if progress:
            progress(1, 1, "done")
    return final, True


def legacy_rootfs() -> Path | None:
    """A complete root filesystem of an older builder with the same Debian recipe (builder 1 had
    numpy and ai-edge-litert installed into it), to derive the current one from; None if none."""
    base = {k: v for k, v in recipe().items() if k != "builder"}
    for path in sorted((cache_root() / "rootfs").glob(f"{SUITE}-arm64-*")):
        if path.name.count(".") or not (path / MARKER).is_file():
            continue  # a board view (NAME.rpi5) or an incomplete folder
        try:
            meta = json.loads((path / MARKER).read_text())
        except (OSError, ValueError):
            continue
        if meta.get("builder") != BUILDER_VERSION and all(meta.get(k) == v for k, v in base.items()):
            return path
    return None


def derive_rootfs(old: Path, stage: Path) -> None:
    """STAGE: OLD hard-linked (`cp -al`: new directories, shared file contents), without the Python
    packages builder 1 installed and without what runs left in /root and /tmp. OLD is unchanged:
    removing a name in the copy's own directory never touches the original's."""
    subprocess.run(["cp", "-al", str(old), str(stage)], check=True)
    for rel in (SITE, "root/.edgeship", "tmp"):
        shutil.rmtree(stage / rel, ignore_errors=True)
    (stage / SITE).mkdir(parents=True)
    (stage / "tmp").mkdir(mode=0o1777)
    os.chmod(stage / "tmp", 0o1777)
    (stage / MARKER).unlink()


def wheel_platforms(glibc_minor: int = 36) -> list[str]:
    """pip --platform tags an aarch64 glibc 2.<minor> system accepts, newest first."""
    return [f"manylinux_2_{m}_aarch64" for m in range(glibc_minor, 16, -1)] + ["manylinux2014_aarch64"]


def pip_platform_args(py: str, glibc_minor: int = 36) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", py, "--implementation", "cp",
            "--abi", f"cp{py.replace('.', '')}"]
    for tag in wheel_platforms(glibc_minor):
        args += ["--platform", tag]
    return args


def ensure_binfmt() -> None:
    """Register qemu-aarch64 with binfmt_misc (mounting it first) unless it already is."""
    if (BINFMT / "qemu-aarch64").exists():
        return
    if os.geteuid() != 0:
        raise SetupError("qemu-aarch64 is not registered with binfmt_misc, and registering it needs root",
                         hint="run `edgeship devices setup` as root, or `update-binfmts --enable qemu-aarch64`")
    if not (BINFMT / "register").exists():
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SetupError(f"cannot mount binfmt_misc: {r.stderr.strip()}",
                             hint="arm64 binaries need qemu-user-static registered with binfmt_misc on this host")
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if not conf.is_file():
        raise SetupError(f"{conf} is missing", hint=APT_HINT)
    try:
        (BINFMT / "register").write_text(conf.read_text().strip() + "\n")
    except OSError as e:
        if not (BINFMT / "qemu-aarch64").exists():
            raise SetupError(f"cannot register qemu-aarch64 with binfmt_misc: {e}") from None


CORTEX_A72, CORTEX_A76 = "0xd08", "0xd0b"  # MIDR part numbers (ARM implementer 0x41)
HWCAPS = {CORTEX_A72: "fp asimd evtstrm crc32 cpuid",
          CORTEX_A76: "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                      "asimddp"}


def write_cpu_files(root: Path, part: str, cores: int) -> None:
    """A board's /proc/cpuinfo and a /sys holding only devices/system/cpu/{possible,present}, as
    plain files: QEMU user mode shows the host's x86 /proc/cpuinfo (XNNPACK's CPU detection then
    crashes) and the host's /sys (the same); with these files under -L (or in a chroot) it works."""
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present"):
        _replace(cpu / name, f"0-{cores - 1}\n")
    (root / "proc").mkdir(exist_ok=True)
    info = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {HWCAPS[part]}\nCPU implementer\t: 0x41\n"
                   f"CPU architecture: 8\nCPU variant\t: {'0x4' if part == CORTEX_A76 else '0x0'}\nCPU part\t: {part}\n"
                   f"CPU revision\t: {'1' if part == CORTEX_A76 else '3'}\n\n" for i in range(cores))
    _replace(root / "proc/cpuinfo", info)


def _replace(path: Path, text: str) -> None:
    """Write a new inode: never edit a file that a hard-linked board view shares."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _run(cmd: list[str], log: Path, what: str, **kw) -> None:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-400:]
        raise SetupError(f"{what} failed (exit {r.returncode}): {tail}", hint=f"full log: {log}")


def build_steps(stage: Path, log: Path):
    """(description, function) per build step, in order."""
    def debootstrap():
        _run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
              str(stage), os.environ.get("EDGESHIP_DEBIAN_MIRROR") or DEFAULT_MIRROR], log, "debootstrap")

    def host_files():
        for src in ("/etc/ssl/certs/ca-certificates.crt", "/etc/resolv.conf"):
            if Path(src).is_file():
                dst = stage / src.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.unlink(missing_ok=True)
                shutil.copyfile(src, dst)
        write_cpu_files(stage, CORTEX_A72, 4)

    def python3():
        guest = os.readlink(stage / "usr/bin/python3") if (stage / "usr/bin/python3").is_symlink() else "?"
        if guest != f"python{GUEST_PYTHON}":
            raise SetupError(f"the root filesystem's python3 is {guest}, expected python{GUEST_PYTHON}")

    return [("debootstrap Debian bookworm arm64 (minbase, python3)", debootstrap),
            ("copy CA bundle, resolv.conf; Pi 4 cpuinfo and /sys stub for XNNPACK; check python3",
             lambda: (host_files(), python3()))]


def check_host_tools() -> None:
    missing = [t for t in ("debootstrap", QEMU) if shutil.which(t) is None]
    if missing:
        raise SetupError(f"missing on this host: {', '.join(missing)}", hint=APT_HINT)
    if os.geteuid() != 0:
        raise SetupError("building the arm64 root filesystem needs root (debootstrap)",
                         hint="run `sudo edgeship devices setup emu:rpi4` once; using it afterwards needs no root")


def ensure_rootfs(progress=None, rebuild: bool = False) -> tuple[Path, bool]:
    """(path, built): the cached root filesystem, built first when missing (or when rebuild); an
    older builder's root filesystem, when there is one, is the new one's source (no debootstrap)."""
    final = rootfs_path()
    if not rebuild and (final / MARKER).is_file():
        return final, False
    old = None if rebuild else legacy_rootfs()
    if old is None:
        check_host_tools()
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; others wait and then reuse it
        if not rebuild and (final / MARKER).is_file():
            return final, False
        stage = final.parent / f".{final.name}.partial-{os.getpid()}"
        log = final.parent / f"{final.name}.log"
        log.write_text("")
        t0 = time.monotonic()
        if old is not None:
            steps = [(f"derive from {old.name} (hard-linked, without its Python packages)",
                      lambda: derive_rootfs(old, stage))]
        else:
            ensure_binfmt()
            steps = build_steps(stage, log)
        try:
            for i, (what, fn) in enumerate(steps):
                if progress:
                    progress(i, len(steps), what)
                fn()
            meta = {**recipe(), "built_seconds": round(time.monotonic() - t0, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if old is not None:
                meta["derived_from"] = old.name
            (stage / MARKER).write_text(json.dumps(meta))
            if final.exists():
                shutil.rmtree(final)
            stage.rename(final)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
        if progress:
            progress(len(steps), len(steps), "done")
    return final, True
