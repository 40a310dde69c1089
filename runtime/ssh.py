"""`ssh://user@host[:port]`: a Linux board (a Raspberry Pi) reached with the system's OpenSSH.

`ssh` and `scp` run as subprocesses, so the user's ~/.ssh/config, keys, agent, ProxyJump and
known_hosts apply as they do on the command line (EDGESHIP_SSH_CONFIG names another config file,
passed as `-F`). BatchMode=yes: nothing ever prompts; host key checking stays as configured and is
never turned off here. Everything lives under ~/.edgeship on the device:

    ~/.edgeship/venv/                   numpy, ai-edge-litert, onnxruntime (`edgeship devices setup ssh://...`):
                                        only the Python runtimes (--pte-runtime/--tflite-runtime python,
                                        EDGESHIP_ONNX_RUNTIME=python) need it
    ~/.edgeship/agent-<hash>/edgeship_agent/   the agent, pushed once per version
    ~/.edgeship/artifacts/<sha256>/NAME        artifacts, pushed once, checked by sha256
    ~/.edgeship/runs/<id>/                     one run's inputs and outputs, removed afterwards
    ~/.edgeship/native-<key>/                  a native runner + its libraries (.pte, .tflite, .onnx: ssh_native.py)

A run has a timeout on both ends (`timeout` on the device, the subprocess's here). A connection
that drops during a run is retried once; a second drop fails that artifact only, so the results
already gathered are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from edgeship.errors import DeviceError, InputError
from edgeship.hashing import sha256_file
from edgeship.runtime import native_build, ssh_native
from edgeship.runtime.base import AgentRun, describe_exit, parse_agent_stdout
from edgeship.runtime.emulated import agent_package
from edgeship.runtime.local import load_outputs, save_inputs
from edgeship.runtime.rootfs import MARKER, cache_root, host_version, pip_platform_args

HOME = ".edgeship"  # relative to the login directory: the same path for ssh and scp
VENV_PYTHON = f"{HOME}/venv/bin/python"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_INDEX_ENV = "EDGESHIP_TORCH_INDEX_URL"
WHEELS = ("numpy", "ai-edge-litert", "onnxruntime")
DROPPED = ("connection closed", "closed by remote host", "connection reset", "broken pipe", "timeout, server",
           "not responding", "connection to .* closed", "lost connection", "client_loop: send disconnect")


def parse_uri(uri: str) -> tuple[str | None, str, int | None]:
    if not uri.startswith("ssh://"):
        raise InputError(f"'{uri}' is not an ssh:// device URI", hint="ssh://user@host[:port]")
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"bad port in '{uri}'", hint="ssh://user@host[:port]") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise InputError(f"'{uri}' names no host (or has a path)", hint="ssh://user@host[:port]")
    return parts.username, parts.hostname, port


def agent_hash(agent_dir: Path) -> str:
    h = hashlib.sha256()
    for f in sorted((agent_dir / "edgeship_agent").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


class SSHFailure(Exception):
    """ssh/scp exited 255: the connection, not the remote command, failed."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr

    @property
    def dropped(self) -> bool:
        s = self.stderr.lower()
        return any(re.search(p, s) for p in DROPPED)


class SSHDevice:
    """A board over SSH (`ssh://user@host[:port]`): edgeship pushes its runners and agent there."""

    scheme = "ssh"
    # `devices setup` options, as the refusal for another kind says them; --help says what they install
    setup_options: ClassVar[dict[str, str]] = {"with_executorch": "installs onto ssh:// devices"}
    setup_instead: ClassVar[dict[str, str]] = {
        "with_python": "ssh:// setup installs the Python side wherever the board has python3"}

    @classmethod
    def prepare(cls, uri: str, progress=None, rebuild: bool = False, with_executorch: bool = False) -> dict:
        """Push the native runners and, where the board has python3, build ~/.edgeship/venv (setup)."""
        return cls(uri, require_runtime=False).setup(progress=progress, rebuild=rebuild,
                                                      with_executorch=with_executorch)

    def __init__(self, uri: str, require_runtime: bool = True):
        self.user, self.host, self.port = parse_uri(uri)
        self.uri = uri.rstrip("/")
        self.dest = f"{self.user}@{self.host}" if self.user else self.host
        config = os.environ.get("EDGESHIP_SSH_CONFIG")
        self.common = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                       "-o", "ServerAliveCountMax=4"] + (["-F", config] if config else [])
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeship-ssh-")
        self.agent_dir = agent_package(Path(self._tmp.name) / "agent")
        self.agent_remote = f"{HOME}/agent-{agent_hash(self.agent_dir)}"
        self.require_runtime = require_runtime  # kept for callers; no run needs the venv up front any more
        self._ready = False
        self._state: dict | None = None  # the last probe_script answer
        self._emulated: bool | None = None
        self.retries = 0  # runs retried after a dropped connection (kept for reports and tests)

    @property
    def emulated(self) -> bool:
        """True when the board is edgeship's own emulated arm64 root filesystem (its marker file at
        /, as the SSH tests' chroot under QEMU): a real board never has it. One round trip, kept."""
        if self._emulated is None:
            try:
                self._emulated = self._connect().get("emurootfs") == "yes"
            except DeviceError:
                return False  # unreachable: the run says so
        return self._emulated

    # -- transport ------------------------------------------------------------------------------

    def ssh(self, command: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["ssh", *self.common] + (["-p", str(self.port)] if self.port else []) + [self.dest, command]
        return self._call(cmd, timeout, check)

    def scp(self, sources: list[str], target: str, timeout: float = 300.0) -> None:
        cmd = ["scp", "-q", "-r", *self.common] + (["-P", str(self.port)] if self.port else []) + sources + [target]
        self._call(cmd, timeout, True)

    def remote(self, path: str) -> str:
        return f"{self.dest}:{path}"

    def _call(self, cmd: list[str], timeout: float, check: bool) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DeviceError(f"'{cmd[0]}' is not installed on this host",
                              hint="apt-get install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise SSHFailure(f"timeout, server not responding within {timeout:.0f} s") from None
        if proc.returncode == 255 or (cmd[0] == "scp" and proc.returncode != 0 and SSHFailure(proc.stderr).dropped):
            raise SSHFailure(proc.stderr)  # the connection failed, not the remote command
        if check and proc.returncode != 0:
            raise DeviceError(f"{self.uri}: `{cmd[-1] if cmd[0] == 'ssh' else 'scp'}` failed (exit "
                              f"{proc.returncode}): {_last(proc.stderr or proc.stdout)}")
        return proc

    def connection_error(self, e: SSHFailure) -> DeviceError:
        """The one-line error for a connection that could not be made."""
        s = e.stderr
        low = s.lower()
        port = f" -p {self.port}" if self.port else ""
        if "remote host identification has changed" in low or "host key for" in low and "has changed" in low:
            return DeviceError(f"{self.uri}: the host key of {self.host} does not match the one in known_hosts "
                               f"(possible man-in-the-middle, or the board was reinstalled)",
                               hint=f"if the board was reinstalled, remove the old key with `ssh-keygen -R "
                               f"{_known_hosts_name(self.host, self.port)}` and connect once with "
                               f"`ssh{port} {self.dest}` to check the new one")
        if "host key verification failed" in low or "no " in low and "host key is known" in low:
            return DeviceError(f"{self.uri}: the host key of {self.host} is not known, and edgeship never accepts "
                               f"one unseen", hint=f"connect once with `ssh{port} {self.dest}` and check the "
                               f"key's fingerprint")
        if "permission denied" in low or "too many authentication failures" in low:
            return DeviceError(f"{self.uri}: authentication failed ({_last(s)})",
                               hint=f"check that your key is authorized on the device (`ssh-copy-id{port} "
                               f"{self.dest}`) and loaded (ssh-add, or IdentityFile in ~/.ssh/config)")
        return DeviceError(f"{self.uri}: cannot connect: {_last(s) or 'ssh failed'}",
                           hint=f"check that the device is on and reachable: `ssh{port} {self.dest} true`")

    # -- preparation --------------------------------------------------------------------------

    def _connect(self) -> dict:
        """One round trip, in the device's POSIX shell (no Python needed there): what the device is
        (probe_script) and what it has (python3, the venv, this agent version, native runners)."""
        try:
            out = self.ssh(probe_script(self.agent_remote), timeout=120).stdout
        except SSHFailure as e:
            raise self.connection_error(e) from None
        state = parse_probe(out)
        self._state = state
        self._emulated = state.get("emurootfs") == "yes"
        return state

    def preflight(self) -> None:
        """Connect now and check that the device can run something (edgeship check calls this
        before its exports): an aarch64 board runs .tflite, .pte and .onnx through the runners edgeship
        pushes; another needs the venv that `edgeship devices setup` builds."""
        try:
            self._ensure_ready()
        except SSHFailure as e:
            raise self.connection_error(e) from None
        state = self._state or {}
        if state.get("arch") not in NATIVE_ARCHES and state.get("venv") != "yes":
            raise DeviceError(f"{self.uri}: the device is {state.get('arch') or 'of unknown architecture'}: "
                              f"edgeship's native runners are aarch64, and it has no ~/{HOME}/venv for the Python "
                              f"agent", hint=self.setup_hint())

    def setup_hint(self) -> str:
        return (f"run `edgeship devices setup {self.uri}` (installs numpy, ai-edge-litert and onnxruntime into "
                f"~/{HOME}/venv; needs python3 on the device)")

    def _ensure_ready(self) -> None:
        """Connect once. Nothing is required here: the native runners are pushed by the runs that
        use them, and the Python agent by the runs that need it (needs_venv)."""
        if self._ready:
            return
        self._connect()
        self._ready = True

    def needs_venv(self, artifact: Path) -> str | None:
        """None when the Python agent can run ARTIFACT here (pushing the agent first when missing);
        else the one-line reason it cannot, naming the fix."""
        state = self._state or self._connect()
        if state.get("venv") != "yes":
            return (f"{self.uri} has no ~/{VENV_PYTHON}: {python_reason(artifact)} needs Python on the device; "
                    f"run `edgeship devices setup {self.uri}`" + ("" if state.get("python3") else
                                                                 " (after installing python3 there)"))
        self._ensure_agent()
        return None

    def _ensure_agent(self) -> None:
        state = self._state or self._connect()
        if state.get("agent") != "yes":
            self._push_agent()
            state["agent"] = "yes"

    def _push_agent(self) -> None:
        tmp = f"{self.agent_remote}.tmp-{uuid.uuid4().hex[:8]}"
        self.ssh(f"mkdir -p {tmp}")
        self.scp([str(self.agent_dir / "edgeship_agent")], self.remote(tmp + "/"))
        files = sorted((self.agent_dir / "edgeship_agent").glob("*.py"))
        self._verify({f"{tmp}/edgeship_agent/{f.name}": sha256_file(f) for f in files})
        self.ssh(f"rm -rf {self.agent_remote} && mv {tmp} {self.agent_remote} && touch {self.agent_remote}/ok")

    def _verify(self, expected: dict[str, str]) -> None:
        """sha256 of the pushed files on the device against the host's; a mismatch is an error."""
        out = self.ssh("sha256sum " + " ".join(shlex.quote(p) for p in expected)).stdout
        got = {line.split(None, 1)[1].strip().lstrip("*"): line.split(None, 1)[0] for line in out.splitlines()
               if len(line.split(None, 1)) == 2}
        bad = [p for p, h in expected.items() if got.get(p) != h]
        if bad:
            raise DeviceError(f"{self.uri}: checksum mismatch after copying {', '.join(bad)} to the device",
                              hint="the copy was corrupted or the device's disk is full (edgeship devices doctor)")

    def push_artifact(self, artifact: Path) -> str:
        digest = sha256_file(artifact)
        path = f"{HOME}/artifacts/{digest}/{artifact.name}"
        have = self.ssh(f"sha256sum {shlex.quote(path)} 2>/dev/null || true").stdout.split()
        if not have or have[0] != digest:
            self.ssh(f"mkdir -p {HOME}/artifacts/{digest}")
            self.scp([str(artifact)], self.remote(path))
            self._verify({path: digest})
        return path

    # -- runs -----------------------------------------------------------------------------------

    def run_artifact(self, artifact, inputs, signature, *, threads=1, warmup=5, runs=50, timeout=300.0,
                     verbose=False) -> AgentRun:
        try:
            self._ensure_ready()
        except SSHFailure as e:
            raise self.connection_error(e) from None
        artifact = Path(artifact)
        error = None
        for attempt in range(2):  # one retry after a dropped connection
            try:
                return self._run_once(artifact, inputs, signature, threads, warmup, runs, timeout, verbose)
            except SSHFailure as e:
                error = _last(e.stderr) or "connection lost"
                if attempt == 0:
                    self.retries += 1
                    time.sleep(1.0)
        return AgentRun(False, error=f"connection to {self.host} dropped during the run, twice (retried once): {error}")

    def _run_once(self, artifact, inputs, signature, threads, warmup, runs, timeout, verbose) -> AgentRun:
        if artifact.suffix == ".pte":  # edgeship's native runner unless --pte-runtime python (no torch needed)
            run = ssh_native.run_pte(self, artifact, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                     timeout=timeout)
            if run is not None:
                return run
        if artifact.suffix == ".tflite":  # edgeship's native LiteRT runner unless --tflite-runtime python
            run = ssh_native.run_tflite(self, artifact, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                        timeout=timeout)
            if run is not None:
                return run
        if artifact.suffix == ".onnx":  # edgeship's native ONNX Runtime runner unless EDGESHIP_ONNX_RUNTIME=python
            run = ssh_native.run_onnx(self, artifact, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                      timeout=timeout)
            if run is not None:
                return run
        missing = self.needs_venv(artifact)
        if missing:
            return AgentRun(False, error=missing)
        remote_artifact = self.push_artifact(artifact)
        run_dir = f"{HOME}/runs/{uuid.uuid4().hex[:12]}"
        with tempfile.TemporaryDirectory(prefix="edgeship-ssh-run-") as tmp:
            tmp = Path(tmp)
            save_inputs(tmp / "in.npz", inputs)
            files = [str(tmp / "in.npz")]
            if signature is not None:
                (tmp / "sig.json").write_text(json.dumps(signature))
                files.append(str(tmp / "sig.json"))
            self.ssh(f"mkdir -p {run_dir}")
            self.scp(files, self.remote(run_dir + "/"))
            self._verify({f"{run_dir}/{Path(f).name}": sha256_file(Path(f)) for f in files})
            args = ["run", f"$HOME/{remote_artifact}", "--inputs", "in.npz", "--out", "out.npz",
                    "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs),
                    "--max-seconds", str(max(1.0, timeout / 4))]
            if signature is not None:
                args += ["--signature", "sig.json"]
            if verbose:
                args.append("--verbose")
            cmd = (f"cd {run_dir} && PYTHONPATH=$HOME/{self.agent_remote} PYTHONUNBUFFERED=1 timeout -s KILL "
                   f"{int(timeout)} $HOME/{VENV_PYTHON} -m edgeship_agent.agent " + " ".join(args))
            proc = self.ssh(cmd, timeout=timeout + 60, check=False)
            try:
                if proc.returncode in (124, 137) and parse_agent_stdout(proc.stdout) is None:
                    return AgentRun(False, error=f"timed out after {timeout:.0f} s on {self.host} (the runtime hung "
                                    f"or is too slow)")
                result = parse_agent_stdout(proc.stdout)
                if result is None:
                    code = proc.returncode
                    code = -(code - 128) if 128 < code < 160 else code  # the remote shell reports 128 + signal
                    return AgentRun(False, error=describe_exit(code, proc.stderr))
                if not result.get("ok"):
                    error = f"{result.get('stage', 'run')}: {result.get('error')}"
                    if artifact.suffix == ".pte" and "No module named" in error:
                        error += (f"; ExecuTorch's Python runtime needs torch and executorch in ~/{HOME}/venv on "
                                  f"the device (torch from PyTorch's CPU index: `pip install torch --index-url "
                                  f"https://download.pytorch.org/whl/cpu`)")
                    if artifact.suffix == ".onnx" and "onnxruntime" in error:
                        error += f"; `edgeship devices setup {self.uri}` installs it into ~/{HOME}/venv"
                    return AgentRun(False, result, error=error)
                self.scp([self.remote(f"{run_dir}/out.npz")], str(tmp / "out.npz"))
                return AgentRun(True, result, load_outputs(tmp / "out.npz"))
            finally:
                try:
                    self.ssh(f"rm -rf {run_dir}", timeout=60, check=False)
                except SSHFailure:
                    pass

    # -- setup and doctor ------------------------------------------------------------------------

    def probe(self) -> dict:
        """What the device is and has, from the POSIX shell probe (no Python needed there); the
        native runners are pushed and asked what they register; the Python agent's probe adds the
        Python runtimes only where the venv exists."""
        state = self._connect()
        result = shell_report(state)
        if state.get("venv") == "yes":
            self._ensure_agent()
            proc = self.ssh(f"PYTHONPATH=$HOME/{self.agent_remote} $HOME/{VENV_PYTHON} -m edgeship_agent.probe",
                            timeout=300, check=False)
            agent = parse_agent_stdout(proc.stdout)
            if agent is None:
                raise DeviceError(f"{self.uri}: the probe in ~/{HOME}/venv failed: "
                                  f"{describe_exit(proc.returncode, proc.stderr)}",
                                  hint=f"rebuild it: `edgeship devices setup {self.uri} --rebuild`")
            result.update({k: agent[k] for k in ("tflite", "executorch", "python", "python_executable") if k in agent})
        else:
            why = f"no ~/{VENV_PYTHON} (needed only for the Python runtimes); {self.setup_hint()}"
            result["tflite"] = {"available": False, "reason": why}
            result["executorch"] = {"available": False, "reason": why}
        for kind, spec in native_build.SPECS.items():
            n = result[spec.report_key] = ssh_native.probe(self, kind)
            if n.get("location"):  # cached before this probe, or pushed by it
                n["cached_before"] = any(c.startswith(n["location"].rsplit("/", 1)[-1] + "/")
                                         for c in state.get("native", []))
        result["formats"] = formats(result, state, self.uri)
        return result

    def setup(self, progress=None, rebuild: bool = False, with_executorch: bool = False) -> dict:
        steps = ["connect", "download aarch64 wheels on this host", "create ~/.edgeship/venv",
                 "install numpy, ai-edge-litert and onnxruntime"
                 + (", torch (CPU) and executorch" if with_executorch else ""),
                 "check"]

        def step(i):
            if progress:
                progress(i, len(steps), steps[i] if i < len(steps) else "done")

        step(0)
        try:
            return self._setup(step, rebuild, with_executorch)
        except SSHFailure as e:
            raise self.connection_error(e) from None

    def _setup(self, step, rebuild: bool, with_executorch: bool = False) -> dict:
        state = self._connect()
        if not state.get("python3"):  # nothing to build a venv with: the native runners are all it gets
            step(4)
            report = self.probe()
            step(5)
            report["setup"] = ("native runners only: no python3 on the device, so no venv for the Python "
                               "runtimes (`sudo apt install python3 python3-venv`, then setup again)")
            return report
        info = json.loads(self.ssh("python3 -c 'import json, platform, sys; print(json.dumps({\"py\": "
                                   "\"%d.%d\" % sys.version_info[:2], \"libc\": platform.libc_ver()[1]}))'").stdout)
        arch = state.get("arch", "")
        step(1)
        wheel_dir = download_wheels(arch, info["py"], info["libc"])
        et_dir = download_executorch_wheels(info["py"], info["libc"]) if with_executorch else None
        step(2)
        if rebuild:
            self.ssh(f"rm -rf {HOME}/venv")
        # Without pip in the venv when the system's pip can install into it (`pip --python`, pip >= 22.3):
        # on a slow board (or under emulation) ensurepip costs a minute.
        r = self.ssh(f"test -x {VENV_PYTHON} || python3 -m venv --without-pip {HOME}/venv", timeout=600, check=False)
        if r.returncode != 0:
            raise DeviceError(f"{self.uri}: cannot create a virtual environment: {_last(r.stderr or r.stdout)}",
                              hint="install venv there: `sudo apt install python3-venv`")
        step(3)
        self.ssh(f"rm -rf {HOME}/wheels && mkdir -p {HOME}/wheels")
        wheels = sorted(wheel_dir.glob("*.whl")) + (sorted(et_dir.glob("*.whl")) if et_dir else [])
        self.scp([str(w) for w in wheels], self.remote(f"{HOME}/wheels/"), timeout=900)
        self._verify({f"{HOME}/wheels/{w.name}": sha256_file(w) for w in wheels})
        install = f"install -q --no-compile --no-index --find-links {HOME}/wheels"
        pip = f"python3 -m pip --python {VENV_PYTHON}"
        r = self.ssh(f"{pip} {install} {' '.join(_pins())}", timeout=1200, check=False)
        if r.returncode != 0:  # an older or absent system pip: give the venv its own
            pip = f"{VENV_PYTHON} -m pip"
            r = self.ssh(f"{VENV_PYTHON} -m ensurepip -q && {pip} {install} {' '.join(_pins())}", timeout=1200,
                         check=False)
        if r.returncode != 0:
            raise DeviceError(f"{self.uri}: installing the runtime failed: {_last(r.stderr or r.stdout)}")
        if et_dir is not None:  # executorch without its exporter's dependencies: the runtime needs torch only
            r = self.ssh(f"{pip} {install} {_pin('torch', '2.13.0')} && {pip} {install} --no-deps "
                         f"{_pin('executorch', '1.5.1')}", timeout=1800, check=False)
            if r.returncode != 0:
                raise DeviceError(f"{self.uri}: installing torch and executorch failed: {_last(r.stderr or r.stdout)}",
                                  hint="the LiteRT runtime is installed; .tflite artifacts run")
        self.ssh(f"rm -rf {HOME}/wheels", check=False)
        step(4)
        self._ready = False
        report = self.probe()
        step(5)
        report["setup"] = "installed"
        return report


def _pin(dist: str, fallback: str) -> str:
    """dist==the version this host runs (without a local label such as +cpu)."""
    return f"{dist}=={host_version(dist, fallback).split('+')[0]}"


def _pins() -> list[str]:
    return [_pin("numpy", "2.2.6"), _pin("ai-edge-litert", "2.3.0"), _pin("onnxruntime", "1.31.0")]


def _wheel_cache(py: str, libc: str, key: list[str], suffix: str = "") -> tuple[Path, Path, int]:
    """(folder, the stamp that says it is complete, glibc minor) for the device's aarch64 wheels,
    cached on this host and keyed by what was asked for."""
    try:
        minor = int(libc.split(".")[1])
    except (IndexError, ValueError):
        minor = 28
    dest = cache_root() / "wheels" / f"aarch64-cp{py.replace('.', '')}-glibc2.{minor}{suffix}"
    return dest, dest / ("ok-" + hashlib.sha256(" ".join(key).encode()).hexdigest()[:12]), minor


def download_executorch_wheels(py: str, libc: str) -> Path:
    """aarch64 wheels for ExecuTorch's Python runtime, fetched by this host's pip: torch from
    PyTorch's CPU index (PyPI's aarch64 torch is a CUDA build that does not import without the
    CUDA libraries) with its dependencies, and executorch from PyPI. Fetched before the device is
    touched, so a host without access to the index loses nothing on the device."""
    import sys


    index = os.environ.get(TORCH_INDEX_ENV) or TORCH_CPU_INDEX
    pins = [_pin("torch", "2.13.0"), _pin("executorch", "1.5.1")]
    dest, stamp, minor = _wheel_cache(py, libc, [index, *pins], "-executorch")
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    platform = pip_platform_args(py, minor)
    for args, where in (([f"--index-url={index}", pins[0]], f"PyTorch's CPU index ({index})"),
                        (["--no-deps", pins[1]], "the package index")):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--retries", "1", "-d", str(dest),
                               *platform, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            unreachable = re.search(r"NewConnectionError|Name or service not known|Could not resolve|timed out",
                                    proc.stderr)
            why = "it cannot be reached from this host" if unreachable else _last(proc.stderr)
            raise DeviceError(f"cannot download {args[-1]} for aarch64 from {where}: {why}",
                              hint=f"this host needs access to it (a mirror: set {TORCH_INDEX_ENV}); without "
                                   "--with-executorch, setup installs the LiteRT runtime only")
    stamp.touch()
    return dest


def download_wheels(arch: str, py: str, libc: str) -> Path:
    """The device's wheels, fetched by this host's pip (the device needs no index access), cached."""
    import sys


    if arch not in ("aarch64", "arm64"):
        raise DeviceError(f"the device is {arch or 'of unknown architecture'}; edgeship sets up aarch64 (arm64) "
                          "devices", hint="install numpy and ai-edge-litert into ~/.edgeship/venv by hand")
    pins = _pins()
    dest, stamp, minor = _wheel_cache(py, libc, pins)
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), *pip_platform_args(py, minor),
                           *pins],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeviceError(f"cannot download aarch64 wheels for Python {py}: {_last(proc.stderr)}",
                          hint="this host needs access to PyPI (or a configured index)")
    stamp.touch()
    return dest


NATIVE_ARCHES = ("aarch64", "arm64")  # what edgeship's native runners are built for
PROBE_KEYS = ("arch", "kernel", "cores", "os", "libc", "disk", "python3", "venv", "onnxruntime", "agent", "emurootfs")
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78"}


def probe_script(agent_remote: str) -> str:
    """The device probe, a POSIX shell command (dash, bash and busybox ash run it): one key=value
    per line. cpu= and mem= repeat (lines of /proc/cpuinfo and /proc/meminfo), native= names each
    runner cached under ~/.edgeship/native-<key>/."""
    return "; ".join([
        "echo arch=$(uname -m)", "echo kernel=$(uname -r)",
        "echo cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)",
        "grep -E '^(model name|Model|Hardware|CPU part)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | sed 's/^/cpu=/'",
        "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo 2>/dev/null | sed 's/^/mem=/'",
        "sed -n 's/^PRETTY_NAME=/os=/p' /etc/os-release 2>/dev/null",
        "echo libc=$(getconf GNU_LIBC_VERSION 2>/dev/null)",
        "echo disk=$(stat -f -c '%a %S' . 2>/dev/null)",
        "p=$(command -v python3 2>/dev/null) && echo \"python3=$p $(python3 --version 2>&1)\"",
        f"test -x {VENV_PYTHON} && echo venv=yes",
        (f"for d in {HOME}/venv/lib/python3*/site-packages/onnxruntime; do test -d \"$d\" && echo onnxruntime=yes; "
         "done"),
        f"test -f {agent_remote}/ok && echo agent=yes",
        f"test -f /{MARKER} && echo emurootfs=yes",
        (f"for d in {HOME}/native-*; do for r in pte_runner litert_runner ort_runner; do test -x \"$d/$r\" && "
         f"echo \"native=${{d#{HOME}/}}/$r\"; done; done"),
        "true"])


def parse_probe(out: str) -> dict:
    """probe_script's answer: {key: value} (the last of each), with 'cpu', 'mem' and 'native' as
    lists; lines that are not the probe's (a login banner) are left out."""
    state: dict = {"cpu": [], "mem": [], "native": []}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("cpu", "mem", "native"):
            state[key].append(value.strip())
        elif key in PROBE_KEYS and value.strip():
            state[key] = value.strip()
    return state


def shell_report(state: dict) -> dict:
    """The doctor report's fields from parse_probe's state (the Python agent's probe's names)."""
    cpu: dict[str, str] = {}
    for line in state.get("cpu", []):
        k, _, v = line.partition(":")
        cpu.setdefault(k.strip(), v.strip())
    model = next((cpu[k] for k in ("model name", "Model", "Hardware") if cpu.get(k)), None)
    if model is None and cpu.get("CPU part"):
        part = cpu["CPU part"].lower()
        model = f"{ARM_PARTS.get(part, 'Arm core')} (CPU part {part})"
    mem = {}
    for line in state.get("mem", []):
        k, _, v = line.partition(":")
        try:
            mem[k.strip()] = int(v.split()[0]) / 1024.0
        except (IndexError, ValueError):
            pass
    try:
        avail, block = (int(x) for x in state.get("disk", "").split())
        disk = avail * block / 2**20
    except ValueError:
        disk = None
    try:
        cores = int(state.get("cores", ""))
    except ValueError:
        cores = None
    py_path, _, py_version = (state.get("python3") or "").partition(" ")
    return {"ok": True, "machine": state.get("arch"), "cpu_model": model, "cores": cores,
            "kernel": state.get("kernel"), "os": (state.get("os") or "").strip('"') or None,
            "libc": state.get("libc") or None, "disk_free_mb": disk, "mem_total_mb": mem.get("MemTotal"),
            "mem_available_mb": mem.get("MemAvailable"), "emulated": state.get("emurootfs") == "yes",
            "python": py_version.replace("Python", "").strip() or None if py_path else None,
            "python_executable": py_path or None, "python3": bool(py_path), "venv": state.get("venv") == "yes",
            "onnxruntime": state.get("onnxruntime") == "yes",
            "native_cached": sorted(state.get("native", [])), "probe": "shell"}


def python_reason(artifact: Path) -> str:
    """What makes ARTIFACT's run need the Python agent on the device (one clause)."""
    if artifact.suffix == ".onnx":
        if native_build.onnx_runtime() == "python":
            return "EDGESHIP_ONNX_RUNTIME=python"
        return ".onnx without the native ONNX Runtime runner (this host cannot build it; see above)"
    if artifact.suffix == ".tflite":
        if native_build.tflite_runtime() == "python":
            return "--tflite-runtime python"
        return ".tflite without the native LiteRT runner (this host cannot build it; see above)"
    if artifact.suffix == ".pte":
        if native_build.pte_runtime() == "python":
            return "--pte-runtime python"
        return ".pte without the native ExecuTorch runner (this host cannot build it; see above)"
    return f"'{artifact.suffix}'"


def formats(report: dict, state: dict, uri: str) -> dict:
    """{'.tflite' | '.pte' | '.onnx': {'runs': bool, 'how': str}}: which formats the device runs, and
    with what (the native runners first, as runs use them)."""
    venv = state.get("venv") == "yes"
    setup = f"`edgeship devices setup {uri}`"
    out = {}
    for kind, spec in native_build.SPECS.items():
        ext, choice, name = spec.fmt, native_build.runtime_choice(kind), spec.title
        nat, py = report.get(spec.report_key) or {}, report.get(spec.python_key) or {}
        if choice == "native" and nat.get("available"):
            out[ext] = {"runs": True, "how": f"native {name} runner, pushed by edgeship (no Python)"}
        elif ext == ".onnx" and venv and state.get("onnxruntime") == "yes":
            out[ext] = {"runs": True, "how": f"onnxruntime in ~/{VENV_PYTHON}"}
        elif ext == ".onnx":
            fix = (f"no onnxruntime in ~/{VENV_PYTHON}: {setup} --rebuild" if venv else
                   f"needs Python on the device (~/{VENV_PYTHON}): {setup}")
            out[ext] = {"runs": False, "how": fix + (f"; the native runner: {nat.get('reason')}"
                                                     if choice == "native" and nat.get("reason") else "")}
        elif py.get("available"):
            out[ext] = {"runs": True, "how": f"{py.get('runtime')} in ~/{VENV_PYTHON}"}
        else:
            why = (nat.get("reason") if choice == "native" else None) or py.get("reason") or "no runtime"
            out[ext] = {"runs": False, "how": str(why)}
    return out


def _known_hosts_name(host: str, port: int | None) -> str:
    return f"'[{host}]:{port}'" if port and port != 22 else host


def _last(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip() and not ln.startswith("@@@")]
    return lines[-1][-300:] if lines else ""
