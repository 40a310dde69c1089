"""Device leases: a job that times something on a device holds that device alone, so two shards never
time on one board at once (exports need no lease and run in parallel).

    local, emu:*   an flock on a lock file on this machine ($EDGESHIP_LEASE_DIR, default
                   ~/.cache/edgeship/leases): released by the kernel when the holder exits
    ssh://         a lock directory on the board, made by an atomic `mkdir` over the device's own ssh
    adb            the same on the phone, over adb shell (/data/local/tmp)

A remote lease names its holder in an owner file whose mtime the holder refreshes every minute; one
silent for `ttl_s` (a holder that died without releasing it) is broken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import threading
import time
from pathlib import Path

from edgeship.console import info
from edgeship.errors import DeviceError
from edgeship.runtime.base import scheme_of

REMOTE_DIR = {"ssh": "/tmp/edgeship-device-lease", "adb": "/data/local/tmp/edgeship-device-lease"}
POLL_S = 0.5
HEARTBEAT_S = 60.0  # a remote lease's holder touches it this often; silent for ttl_s, it is broken


class LeaseBusy(DeviceError):
    """The device stayed leased to another holder for longer than the wait allowed."""


def lease_dir() -> Path:
    return Path(os.environ.get("EDGESHIP_LEASE_DIR") or Path.home() / ".cache" / "edgeship" / "leases")


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def lease(uri: str, device=None, wait_s: float | None = None, ttl_s: float = 300.0):
    """Hold the device URI exclusively for the block. DEVICE: the opened device (ssh/adb: its transport);
    wait_s: how long to wait for another holder (None: as long as it takes; 0: not at all)."""
    scheme = scheme_of(uri)
    if scheme in ("ssh", "adb"):
        with _remote(uri, device, scheme, wait_s, ttl_s):
            yield
    else:
        with _local(uri, wait_s):
            yield


@contextlib.contextmanager
def _local(uri: str, wait_s: float | None):
    folder = lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", uri) + ".lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        _wait(uri, lambda: _try_flock(fd), wait_s, lambda: path.read_text(errors="replace").strip())
        os.ftruncate(fd, 0)
        os.write(fd, _holder().encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait(uri: str, attempt, wait_s: float | None, holder) -> None:
    start, said = time.monotonic(), False
    while not attempt():
        waited = time.monotonic() - start
        if wait_s is not None and waited >= wait_s:
            raise LeaseBusy(f"device '{uri}' is leased to {holder() or 'another job'}",
                            hint="another shard is timing on it; its lease ends with its job")
        if not said:
            info(f"waiting for the lease on {uri} (held by {holder() or 'another job'})")
            said = True
        time.sleep(POLL_S)


class _Shell:
    """(exit status, output) of a command on the device, over its own transport."""

    def __init__(self, device, scheme: str):
        self.device, self.scheme = device, scheme

    def __call__(self, command: str) -> tuple[int, str]:
        if self.scheme == "adb":
            return self.device.shell(command, timeout=60)
        proc = self.device.ssh(command, timeout=60, check=False)
        return proc.returncode, proc.stdout + proc.stderr


@contextlib.contextmanager
def _remote(uri: str, device, scheme: str, wait_s: float | None, ttl_s: float):
    if device is None:
        from edgeship.runtime.device import open_device

        device = open_device(uri)
    shell, d = _Shell(device, scheme), REMOTE_DIR[scheme]
    owner = re.sub(r"[^A-Za-z0-9_.:-]", "_", _holder())  # safe in a shell word
    # mkdir is the lock; the owner file names the holder and its mtime is the holder's heartbeat
    take = (f"if mkdir {d} 2>/dev/null; then echo {owner} > {d}/owner; echo LEASED; else "
            f"echo \"HELD $(cat {d}/owner 2>/dev/null) $(stat -c %Y {d}/owner 2>/dev/null) NOW $(date +%s)\"; fi")
    seen = {"by": ""}

    def attempt() -> bool:
        rc, out = shell(take)
        if "LEASED" in out:
            return True
        m = re.search(r"HELD\s*(\S*)\s*(\d*)\s*NOW (\d+)", out)
        if not m:
            raise DeviceError(f"could not take the lease on {uri}: {out.strip()[-200:] or f'exit {rc}'}")
        seen["by"] = m.group(1)
        if m.group(1) and m.group(2) and int(m.group(3)) - int(m.group(2)) > ttl_s:  # its holder died holding it
            info(f"breaking a stale lease on {uri} (held by {m.group(1)}, silent for over {ttl_s:.0f} s)")
            # only the lease seen stale: one a faster waiter took meanwhile names another owner
            shell(f"[ \"$(cat {d}/owner 2>/dev/null)\" = {m.group(1)} ] && mv {d} {d}.stale.$$ && rm -rf {d}.stale.$$")
        return False

    _wait(uri, attempt, wait_s, lambda: seen["by"])
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                shell(f"touch {d}/owner")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            shell(f"[ \"$(cat {d}/owner 2>/dev/null)\" = {owner} ] && rm -rf {d}")
