"""The Device protocol: somewhere an artifact runs through the agent.

    device.run_artifact(artifact, inputs, signature, threads=1, warmup=5, runs=50, timeout=300)
        -> AgentRun(ok, result: dict (the agent's JSON), outputs: list[np.ndarray] | None, error)

Every run happens in a separate process with a timeout, so a runtime that aborts, segfaults or
hangs on a broken artifact fails that artifact only. Devices are named by URI; `local` is the
host. (Emulated and remote devices plug in here by URI scheme.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgeship.errors import InputError, suggest


@dataclass
class AgentRun:
    ok: bool
    result: dict = field(default_factory=dict)
    outputs: list[np.ndarray] | None = None
    error: str | None = None  # one line: what went wrong, e.g. "load: ValueError: ..." or "killed by SIGSEGV"


class Device(Protocol):
    uri: str
    emulated: bool

    def run_artifact(self, artifact, inputs: list[np.ndarray], signature: dict | None, *, threads: int = 1,
                     warmup: int = 5, runs: int = 50, timeout: float = 300.0) -> AgentRun: ...


DEVICE_SCHEMES = ("local", "emu:rpi4", "emu:rpi5", "ssh://user@host[:port]", "adb", "adb:SERIAL")


def open_device(uri: str) -> Device:
    if uri in ("local", "host"):
        from edgeship.runtime.local import LocalDevice

        return LocalDevice()
    if uri.startswith("emu:"):
        from edgeship.runtime.emulated import EmulatedDevice

        return EmulatedDevice(uri)
    if uri.startswith("ssh://"):
        from edgeship.runtime.ssh import SSHDevice

        return SSHDevice(uri)
    if uri == "adb" or uri.startswith("adb:"):
        from edgeship.runtime.adb import AdbDevice

        return AdbDevice(uri)
    raise InputError(suggest(uri, DEVICE_SCHEMES, "device"))
