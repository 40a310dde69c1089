"""Fixtures for the device tests: the emulated Pi's root filesystem, a digits bundle, a real sshd.

Nothing is mocked. The root filesystem is built by edgeship's own `devices setup` code (cached
under ~/.cache/edgeship; the first build takes minutes) and needs root, debootstrap and
qemu-user-static: CI installs them (.ci/run). A missing tool fails the tests loudly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require_tool(name: str, package: str) -> str:
    """The path of system tool NAME. The test suite's one policy for device tools: a missing one
    fails the test that needs it, loudly, naming the package; it never skips (.ci/run installs them)."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)
    if path is None:
        pytest.fail(f"{name} is not installed; this test needs it: apt-get install {package} (.ci/run installs it)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def emu_rootfs() -> Path:
    from edgeship.runtime.rootfs import ensure_rootfs

    require_tool("qemu-aarch64-static", "qemu-user-static")
    t0 = time.monotonic()
    path, built = ensure_rootfs()
    print(f"\narm64 root filesystem {'built' if built else 'cached'} in {time.monotonic() - t0:.0f} s: {path}")
    return path


_EXPORTED: dict[str, Path] = {}  # each test module imports these fixtures: export once per session


@pytest.fixture(scope="session")
def digits_bundle(tmp_path_factory) -> Path:
    """torch digits CNN exported to .tflite and .pte, fp32 and int8, 200 golden samples."""
    from click.testing import CliRunner

    from edgeship.cli import cli

    if "digits" in _EXPORTED:
        return _EXPORTED["digits"]
    out = tmp_path_factory.mktemp("devbundle") / "digits"
    r = CliRunner().invoke(cli, ["-q", "export", f"{REPO / 'examples' / 'torch_digits.py'}:build",
                                 "--to", "tflite,pte", "--quant", "fp32,int8", "--calib", "digits:train",
                                 "--eval", "digits:test", "--golden-samples", "200", "--out", str(out),
                                 "--name", "digits"])
    assert r.exit_code == 0, r.output
    _EXPORTED["digits"] = out
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return (path.with_suffix(".pub") if path.suffix else Path(str(path) + ".pub")).read_text().strip()


class SSHTestServer:
    """OpenSSH's sshd on loopback, key auth only, every session chrooted into the arm64 rootfs:
    a Raspberry Pi over SSH, minus the board. Test scaffolding, named as such."""

    def __init__(self, rootfs: Path, workdir: Path):
        for tool, package in (("sshd", "openssh-server"), ("ssh", "openssh-client"), ("scp", "openssh-client"),
                              ("ssh-keygen", "openssh-client")):
            require_tool(tool, package)
        self.rootfs, self.dir = rootfs, workdir
        self.port = free_port()
        self.host_key_pub = keygen(workdir / "host_key")
        self.client_key_pub = keygen(workdir / "client_key")
        (workdir / "authorized_keys").write_text(self.client_key_pub + "\n")
        os.chmod(workdir / "authorized_keys", 0o600)
        self.proc = None
        self.log = workdir / "sshd.log"

    def start(self) -> None:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", "/dev/null", "-oListenAddress=127.0.0.1", f"-oPort={self.port}",
             f"-oHostKey={self.dir / 'host_key'}", f"-oAuthorizedKeysFile={self.dir / 'authorized_keys'}",
             "-oUsePAM=no", "-oStrictModes=no", "-oPermitRootLogin=prohibit-password", "-oPasswordAuthentication=no",
             f"-oChrootDirectory={self.rootfs}", "-oSubsystem=sftp internal-sftp", "-oMaxStartups=50",
             "-oClientAliveInterval=5",
             # sessions exec arm64 binaries through binfmt_misc's qemu-aarch64, which reads QEMU_CPU. Its
             # default, `max`, claims features a Pi lacks, and qemu 7.2 then computes wrong int8 results in
             # XNNPACK (measured: top-1 agreement 9.5% on the digits int8 .tflite; cortex-a72: 100%).
             "-oSetEnv=QEMU_CPU=cortex-a72"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def descendants(self) -> dict[int, str]:
        """{pid: command line} of every process under the listening sshd (sessions, their shells,
        the agents they run), read from /proc."""
        parent, cmdline = {}, {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
        found, frontier = {}, [self.proc.pid]
        while frontier:
            p = frontier.pop()
            for child, ppid in parent.items():
                if ppid == p and child not in found:
                    found[child] = cmdline.get(child, "")
                    frontier.append(child)
        return found

    def drop_connections(self) -> int:
        """SIGKILL every session of this server and what runs in it: the clients see the connection
        drop mid-command, as when a board loses Wi-Fi or reboots."""
        victims = self.descendants()
        for pid in victims:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        return len(victims)

    def running(self, words: str) -> bool:
        return any(words in cmd for cmd in self.descendants().values())

    @property
    def uri(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def client_config(self, name: str, key: str = "client_key", known_host_key: str | None = None) -> Path:
        """An ssh_config (passed through EDGESHIP_SSH_CONFIG) with its own known_hosts."""
        kh = self.dir / f"{name}.known_hosts"
        key_line = self.host_key_pub if known_host_key is None else known_host_key
        kh.write_text(f"[127.0.0.1]:{self.port} {' '.join(key_line.split()[:2])}\n" if key_line else "")
        cfg = self.dir / f"{name}.ssh_config"
        cfg.write_text(f"Host *\n  IdentityFile {self.dir / key}\n  IdentitiesOnly yes\n"
                       f"  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n")
        return cfg


def segfault_when_running(binary: str, marker: Path, sent: list[int], settle: float = 0.2, within: float = 120):
    """A started daemon thread that finds the process running BINARY (its argv[0] ends so) with
    MARKER among its arguments, through /proc, waits SETTLE seconds (inside its timed loop by then)
    and sends it SIGSEGV: a crash planted from outside in the real runner, not a mock of one. The
    pid goes into SENT; nothing is sent if no such process shows up WITHIN seconds. Only a descendant of
    this process is a target: under pytest-xdist the other worker may run the same runner or converter at
    the same moment (a CI run's SIGSEGV landed in test_litert_native's own int8 conversion, and this test's
    child then ran uncrashed)."""
    import signal
    import threading

    me = os.getpid()

    def descends_from_me(pid: int) -> bool:
        while pid > 1:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
            if pid == me:
                return True
        return False

    def watch():
        deadline = time.monotonic() + within
        while not sent and time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                try:
                    cmd = (proc / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd and cmd[0].endswith(binary.encode()) and str(marker).encode() in cmd and \
                        descends_from_me(int(proc.name)):
                    time.sleep(settle)
                    os.kill(int(proc.name), signal.SIGSEGV)
                    sent.append(int(proc.name))
                    break
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher
