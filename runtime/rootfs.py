"""The emulated Raspberry Pi's root filesystem: Debian bookworm arm64, built once and cached.

    path = ensure_rootfs(progress=callback)   # builds when missing, else returns the cached one

Built with debootstrap (minbase, python3, python3-venv, python3-pip), then: the host's CA bundle
and resolv.conf copied in (so pip inside works behind the host's proxy), a stub /sys holding only
devices/system/cpu/{possible,present} (XNNPACK is skipped without them and the host's /sys makes
it crash), and the aarch64 wheels of numpy and ai-edge-litert installed from the host with
`pip install --platform ... --target` at the host's own versions. The cache folder is keyed by a
hash of all that (`~/.cache/edgeship/rootfs/bookworm-arm64-<key>`; EDGESHIP_CACHE moves it), and
a folder appears there only when complete: a failed or interrupted build leaves nothing behind.
The build needs root (debootstrap) and qemu-aarch64 registered with binfmt_misc (done here when
missing); running the result does not (see emulated.py).
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
BUILDER_VERSION = 1
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
    return {
        "suite": SUITE, "arch": "arm64", "variant": "minbase", "packages": list(PACKAGES),
        "python": GUEST_PYTHON, "builder": BUILDER_VERSION,
        "wheels": [f"numpy=={host_version('numpy', '2.2.6')}",
                   f"ai-edge-litert=={host_version('ai-edge-litert', '2.3.0')}"],
    }


def rootfs_path() -> Path:
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / "rootfs" / f"{SUITE}-arm64-{key}"


def cached_rootfs() -> Path | None:
    path = rootfs_path()
    return path if (path / MARKER).is_file() else None


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
    site = stage / SITE

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

    def wheels():
        guest = os.readlink(stage / "usr/bin/python3") if (stage / "usr/bin/python3").is_symlink() else "?"
        if guest != f"python{GUEST_PYTHON}":
            raise SetupError(f"the root filesystem's python3 is {guest}, expected python{GUEST_PYTHON}")
        site.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), *pip_platform_args(GUEST_PYTHON),
              *recipe()["wheels"]], log, "installing the aarch64 wheels")

    return [("debootstrap Debian bookworm arm64 (minbase, python3)", debootstrap),
            ("copy CA bundle, resolv.conf; Pi 4 cpuinfo and /sys stub for XNNPACK", host_files),
            ("install aarch64 numpy and ai-edge-litert", wheels)]


def check_host_tools() -> None:
    missing = [t for t in ("debootstrap", QEMU) if shutil.which(t) is None]
    if missing:
        raise SetupError(f"missing on this host: {', '.join(missing)}", hint=APT_HINT)
    if os.geteuid() != 0:
        raise SetupError("building the arm64 root filesystem needs root (debootstrap)",
                         hint="run `sudo edgeship devices setup emu:rpi4` once; using it afterwards needs no root")


def ensure_rootfs(progress=None, rebuild: bool = False) -> tuple[Path, bool]:
    """(path, built): the cached root filesystem, built first when missing (or when rebuild)."""
    final = rootfs_path()
    if not rebuild and (final / MARKER).is_file():
        return final, False
    check_host_tools()
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; others wait and then reuse it
        if not rebuild and (final / MARKER).is_file():
            return final, False
        ensure_binfmt()
        stage = final.parent / f".{final.name}.partial-{os.getpid()}"
        log = final.parent / f"{final.name}.log"
        log.write_text("")
        t0 = time.monotonic()
        try:
            steps = build_steps(stage, log)
            for i, (what, fn) in enumerate(steps):
                if progress:
                    progress(i, len(steps), what)
                fn()
            (stage / MARKER).write_text(json.dumps({**recipe(), "built_seconds": round(time.monotonic() - t0, 1),
                                                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
            if final.exists():
                shutil.rmtree(final)
            stage.rename(final)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
        if progress:
            progress(len(steps), len(steps), "done")
    return final, True
