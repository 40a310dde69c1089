"""An adb *server* on loopback, written for the tests: test scaffolding, named as such.

It speaks the smart-socket protocol that the real `adb` client speaks to its server (AOSP
adb/OVERVIEW.TXT, SERVICES.TXT, SYNC.TXT): a request is 4 hex digits of length then the
request; the reply is OKAY or FAIL (FAIL followed by a 4-hex-length message). Host services:
host:version, host:devices(-l), host:features / host-serial:S:features (empty: no shell v2, no
stat v2, so the client uses `shell:` and the v1 sync commands), host[-serial:S]:get-state,
host:transport*/host:tport:* to pick a device, then on the same socket `shell:CMD` or `sync:`
(STAT/LIST/SEND/RECV/DATA/DONE/QUIT).

The devices it lists are the emulated Pi's arm64 root filesystem: `shell:` commands run in the
rootfs's own /bin/sh under qemu-aarch64-static (QEMU_LD_PREFIX/QEMU_CPU make every arm64 program
they start run the same way, through binfmt_misc), and a per-test host directory stands for the
phone's /data/local/tmp (paths under it are rewritten on the way in and out).
"""

from __future__ import annotations

import os
import socketserver
import struct
import subprocess
import threading
from pathlib import Path

DATA = "/data/local/tmp"


class AdbTestServer:
    def __init__(self, rootfs: Path, data_dir: Path, devices: dict[str, str] | None = None,
                 hide_glibc: bool = False):
        self.rootfs, self.data = Path(rootfs), Path(data_dir)
        self.data.mkdir(parents=True, exist_ok=True)
        self.devices = dict({"emulator-5554": "device"} if devices is None else devices)  # serial -> state
        self.requests: list[str] = []
        self.sent: list[str] = []  # the device paths of every sync SEND (adb push), in order
        # hide_glibc: what `timeout` starts runs with a QEMU_LD_PREFIX holding only the rootfs's
        # /proc and /sys (its CPU files), so the rootfs's /lib/ld-linux-aarch64.so.1 and
        # /lib/aarch64-linux-gnu (the "phone's" glibc) are not there for it (this host has no arm64
        # glibc of its own); the shell and the rootfs's tools keep it
        self.hide_glibc = hide_glibc
        self.no_glibc = self.data.parent / f"{self.data.name}-no-glibc"
        self.logcat = self.data.parent / f"{self.data.name}-logcat"  # the logcat stand-in's buffer
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    server._session(self.request)
                except (ConnectionError, OSError):
                    pass

        class TCP(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._tcp = TCP(("127.0.0.1", 0), Handler)
        self.port = self._tcp.server_address[1]
        self._thread = threading.Thread(target=self._tcp.serve_forever, daemon=True)

    def start(self) -> "AdbTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()

    def env(self) -> dict:
        return {**os.environ, "ANDROID_ADB_SERVER_PORT": str(self.port)}

    # -- paths: the phone's /data/local/tmp is a host directory ------------------------------

    def host_path(self, p: str) -> Path:
        if p == DATA or p.startswith(DATA + "/"):
            return self.data / p[len(DATA):].lstrip("/")
        raise PermissionError(p)

    def _rewrite(self, cmd: str) -> str:
        return cmd.replace(DATA, str(self.data))

    # -- protocol ---------------------------------------------------------------------------

    @staticmethod
    def _recv(s, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    @staticmethod
    def _okay_str(s, text: str) -> None:
        data = text.encode()
        s.sendall(b"OKAY" + b"%04x" % len(data) + data)

    @staticmethod
    def _fail(s, text: str) -> None:
        data = text.encode()
        s.sendall(b"FAIL" + b"%04x" % len(data) + data)

    def _select(self, s, serial: str | None) -> str | None:
        """A transport, or None after a FAIL, as the real server words them."""
        ready = self.devices
        if serial is None:
            if not ready:
                self._fail(s, "no devices/emulators found")
                return None
            if len(ready) > 1:
                self._fail(s, "more than one device/emulator")
                return None
            serial = next(iter(ready))
        state = ready.get(serial)
        if state is None:
            self._fail(s, f"device '{serial}' not found")
            return None
        if state == "unauthorized":
            self._fail(s, "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                          "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation "
                          "dialog on your device.")
            return None
        if state != "device":
            self._fail(s, f"device {state}")
            return None
        return serial

    def _session(self, s) -> None:
        transport = None
        while True:
            n = int(self._recv(s, 4), 16)
            req = self._recv(s, n).decode()
            self.requests.append(req)
            if req == "host:version":
                self._okay_str(s, "%04x" % 41)
                return
            if req == "host:kill":
                s.sendall(b"OKAY")
                return
            if req in ("host:devices", "host:devices-l"):
                long = req.endswith("-l")
                lines = "".join(f"{k}\t{v}\n" if not long else
                                f"{k:<22} {v} product:rpi4_arm64 model:Emulated_arm64 device:rpi4 transport_id:{i + 1}\n"
                                for i, (k, v) in enumerate(self.devices.items()))
                self._okay_str(s, lines)
                return
            serial, _, service = (req[len("host-serial:"):].rpartition(":") if req.startswith("host-serial:")
                                  else (None, None, req[len("host:"):] if req.startswith("host:") else None))
            if service in ("features", "host-features", "get-state", "get-serialno"):
                if req.startswith("host:") and service == "host-features":
                    self._okay_str(s, "")
                    return
                picked = self._select(s, serial)
                if picked is None:
                    return
                self._okay_str(s, {"features": "", "get-state": "device", "get-serialno": picked}[service])
                return
            if req.startswith(("host:transport", "host:tport:")):
                if req in ("host:transport-any", "host:tport:any"):
                    want = None
                elif req.startswith("host:tport:serial:"):
                    want = req[len("host:tport:serial:"):]
                elif req.startswith("host:transport:"):
                    want = req[len("host:transport:"):]
                else:
                    self._fail(s, f"unsupported: {req}")
                    return
                transport = self._select(s, want)
                if transport is None:
                    return
                s.sendall(b"OKAY" + (struct.pack("<Q", 1) if req.startswith("host:tport:") else b""))
                continue
            if transport is None:
                self._fail(s, f"unknown host service: {req}")
                return
            if req.startswith(("shell:", "exec:")):
                s.sendall(b"OKAY")
                self._shell(s, req.split(":", 1)[1])
                return
            if req == "sync:":
                s.sendall(b"OKAY")
                self._sync(s)
                return
            self._fail(s, f"unknown service: {req}")
            return

    def _shell(self, s, cmd: str) -> None:
        r = str(self.rootfs)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "QEMU_LD_PREFIX": r, "QEMU_CPU": "cortex-a72",
               "HOME": str(self.data), "TMPDIR": str(self.data)}
        # `getprop` is Android's: answer the few properties edgeship asks for
        # ro.kernel.qemu=1: what Android's own (QEMU-based) emulators set, and this device is QEMU too
        props = {"ro.product.model": "Emulated arm64 (QEMU cortex-a72)", "ro.build.version.release": "14",
                 "ro.product.cpu.abi": "arm64-v8a", "ro.kernel.qemu": "1"}
        cases = " ".join(f"{k}) echo '{v}';;" for k, v in props.items())
        cmd = f'getprop() {{ case "$1" in {cases} *) echo;; esac; }}; ' + cmd
        # `logcat` is Android's: a stand-in over a plain file (EDGESHIP_TEST_LOGCAT, which a test's
        # runner appends to as Android's log would): -c empties it, -d prints it, -s TAG:* keeps TAG's lines
        env["EDGESHIP_TEST_LOGCAT"] = str(self.logcat)
        self.logcat.touch()
        cmd = ('logcat() { clear=; tag=; for a in "$@"; do case "$a" in -c) clear=1;; *:*) tag="${a%%:*}";; esac; '
               'done; if [ -n "$clear" ]; then : > "$EDGESHIP_TEST_LOGCAT"; elif [ -n "$tag" ]; then '
               'grep " $tag *: " "$EDGESHIP_TEST_LOGCAT"; else cat "$EDGESHIP_TEST_LOGCAT"; fi; true; }; ') + cmd
        if self.hide_glibc:  # stand-in: what `timeout` starts sees no glibc of the "phone's" (see __init__)
            self.no_glibc.mkdir(exist_ok=True)
            for name in ("proc", "sys"):  # but the board's CPU description (rootfs.write_cpu_files), as a phone has
                if not (self.no_glibc / name).is_symlink():
                    (self.no_glibc / name).symlink_to(self.rootfs / name)
            cmd = (f'timeout() {{ t=$1; shift; if [ "$t" = -s ]; then s=$1; t=$2; shift 2; set -- -s "$s" "$t" '
                   f'env QEMU_LD_PREFIX={self.no_glibc} "$@"; else set -- "$t" env QEMU_LD_PREFIX={self.no_glibc} "$@"; '
                   f'fi; command timeout "$@"; }}; ') + cmd
        p = subprocess.Popen(["qemu-aarch64-static", "-L", r, "-cpu", "cortex-a72", f"{r}/bin/sh", "-c",
                              self._rewrite(cmd)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=str(self.data))
        for chunk in iter(lambda: p.stdout.read1(65536), b""):
            s.sendall(chunk.replace(str(self.data).encode(), DATA.encode()))
        p.wait()

    def _sync(self, s) -> None:
        while True:
            cmd, n = self._recv(s, 4), struct.unpack("<I", self._recv(s, 4))[0]
            if cmd == b"QUIT":
                return
            if cmd == b"STAT":
                try:
                    st = os.stat(self.host_path(self._recv(s, n).decode()))
                    s.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size, int(st.st_mtime)))
                except (OSError, PermissionError):
                    s.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif cmd == b"LIST":
                d = self.host_path(self._recv(s, n).decode())
                for e in sorted(d.iterdir()) if d.is_dir() else []:
                    st, name = e.stat(), e.name.encode()
                    s.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size, int(st.st_mtime), len(name)) + name)
                s.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
            elif cmd == b"SEND":
                path, _, mode = self._recv(s, n).decode().rpartition(",")
                self.sent.append(path)
                try:
                    dest = self.host_path(path)
                except PermissionError:
                    dest = None
                data = bytearray()
                while True:
                    kind, size = self._recv(s, 4), struct.unpack("<I", self._recv(s, 4))[0]
                    if kind == b"DATA":
                        data += self._recv(s, size)
                    elif kind == b"DONE":
                        break
                    else:
                        raise ConnectionError(f"unexpected {kind!r} in SEND")
                if dest is None:
                    msg = f"couldn't create file: Permission denied ({path})".encode()
                    s.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(bytes(data))
                os.chmod(dest, int(mode) & 0o777 if mode.isdigit() else 0o644)
                s.sendall(b"OKAY" + struct.pack("<I", 0))
            elif cmd == b"RECV":
                path = self._recv(s, n).decode()
                try:
                    data = self.host_path(path).read_bytes()
                except (OSError, PermissionError):
                    msg = f"remote object '{path}' does not exist".encode()
                    s.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                for i in range(0, len(data), 64 * 1024):
                    chunk = data[i:i + 64 * 1024]
                    s.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                s.sendall(b"DONE" + struct.pack("<I", 0))
            else:
                msg = f"unknown sync command {cmd!r}".encode()
                s.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return
