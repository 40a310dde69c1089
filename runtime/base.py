"""The contract of runtime/: the Runner and Device protocols, the agent's result, the device schemes.

Device modules (local.py, emulated.py, ssh.py, adb.py) import this file, never each other's
registry (device.py). The runners themselves (standalone/tflite.py, executorch.py, onnx.py) and
the agent are standalone: standard library, numpy and their own runtime only, no `edgeship`
imports, because the same files are pushed to a Raspberry Pi or run in a child process on the
host; they duck-type `Runner`.

Runner:

    runner = Runner(path, signature=None, threads=1)   # loads; raises ValueError on a bad file
    runner.runtime   -> "ai-edge-litert 2.3.0"
    runner.delegate  -> {"name": "XNNPACK", "active": True, "detail": "..."}
    runner.inputs    -> [{"name", "shape", "dtype", "quantization": {"scale", "zero_point"} | None}]
    runner.outputs   -> same
    runner.run([x0, x1, ...]) -> [y0, ...]
        float32 arrays in (batch 1, model input order), float32 arrays out. Integer I/O is
        quantized/dequantized with the artifact's own parameters, else the signature's.

`signature` is the manifest's per-artifact "io" record: {"inputs": [...], "outputs": [...]},
each entry {"name", "shape", "dtype", "layout", "quantization"}.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np


class Runner(Protocol):
    runtime: str
    delegate: dict
    inputs: list[dict]
    outputs: list[dict]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class AgentRun:
    """What one run of an artifact on a device gave."""

    ok: bool
    result: dict = field(default_factory=dict)
    outputs: list[np.ndarray] | None = None
    error: str | None = None  # one line: what went wrong, e.g. "load: ValueError: ..." or "killed by SIGSEGV"


class Device(Protocol):
    """Somewhere an artifact runs through the agent (or a native runner). One class per kind of device
    (local.py, emulated.py, ssh.py, adb.py), and device.py's table of them, by `scheme`, is the only list:
    the commands (`devices setup` and `doctor`, check's, diff's and export's connection up front) ask the
    class, never the scheme.

        Class.scheme            -> 'local' | 'emu' | 'ssh' | 'adb' (scheme_of's names)
        Class.setup_options     -> {option: what it does}, the `devices setup` flags this kind takes
        Class.setup_instead     -> {option: what this kind does instead}, for flags only other kinds take
        Class.prepare(uri, progress=None, rebuild=False, **options) -> report
            what `devices setup` does: build or install what the device needs (which may be what its
            constructor needs: an emulated board's root filesystem), then its probe report
        device.probe()          -> report: what `devices doctor` shows
        device.preflight()      -> None: connect now, before any work, or raise DeviceError
        device.run_artifact(artifact, inputs, signature, threads=1, warmup=5, runs=50, timeout=300)
            -> AgentRun(ok, result: dict (the agent's JSON), outputs: list[np.ndarray] | None, error)

    Every run happens in a separate process with a timeout, so a runtime that aborts, segfaults or
    hangs on a broken artifact fails that artifact only.
    """

    scheme: ClassVar[str]
    setup_options: ClassVar[dict[str, str]]
    setup_instead: ClassVar[dict[str, str]]
    uri: str
    emulated: bool

    @classmethod
    def prepare(cls, uri: str, progress=None, rebuild: bool = False, **options) -> dict: ...

    def probe(self) -> dict: ...

    def preflight(self) -> None: ...

    def run_artifact(self, artifact, inputs: list[np.ndarray], signature: dict | None, *, threads: int = 1,
                     warmup: int = 5, runs: int = 50, timeout: float = 300.0) -> AgentRun: ...


# The device URIs edgeship knows, as users write them (help texts, typo suggestions) and by scheme
# (the project file's [devices] check).
DEVICE_SCHEMES = ("local", "emu:rpi4", "emu:rpi5", "ssh://user@host[:port]", "adb", "adb:SERIAL")
SCHEME_NAMES = ("local", "host", "emu", "ssh", "adb")


def scheme_of(uri: str) -> str | None:
    """'emu' for emu:rpi4, 'ssh' for ssh://pi@host, 'local' for local/host, 'adb' for adb[:SERIAL]; else None."""
    if uri in ("local", "host"):
        return "local"
    if uri == "adb":
        return "adb"
    if uri.startswith("ssh://"):
        return "ssh"
    for scheme in ("emu", "adb"):
        if uri.startswith(scheme + ":"):
            return scheme
    return None


RUNNER_MODULES = {"tflite": "tflite", "pte": "executorch", "onnx": "onnx"}


def format_of(path: str) -> str | None:
    for fmt in RUNNER_MODULES:
        if str(path).endswith("." + fmt):
            return fmt
    return None


# The agent's protocol, as every device reads it


def parse_agent_stdout(stdout: str) -> dict | None:
    """The agent's report is the last line of stdout that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def describe_exit(returncode: int, stderr: str) -> str:
    """'killed by SIGSEGV; last words: ...' for a child that died, else the stderr's last line."""
    last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-3:]
    words = " | ".join(last)[-300:]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"runtime crashed (killed by {name})" + (f"; last words: {words}" if words else "")
    return f"agent exited with status {returncode}" + (f": {words}" if words else "")
