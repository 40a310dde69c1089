"""`edgeship devices setup URI` and `edgeship devices doctor URI`.

setup prepares a device: for emu:* it builds (once) the cached arm64 root filesystem; for ssh://
it installs the runtime into a virtual environment on the device. doctor shows what the device
can run: architecture, CPU model, cores, Python, the TFLite runtime and whether XNNPACK is active,
whether ExecuTorch is available (and why not), free disk and memory.
"""

from __future__ import annotations

import time

from edgeship.errors import InputError
from edgeship.runtime.local import LocalDevice
from edgeship.runtime.native import native_probe_for, native_row


def _scheme(uri: str) -> str:
    from edgeship.runtime.device import DEVICE_SCHEMES

    for scheme in ("emu", "ssh", "adb"):
        if uri.startswith(scheme + ":"):
            return scheme
    if uri == "adb":
        return "adb"
    if uri in ("local", "host"):
        return "local"
    from edgeship.errors import suggest

    raise InputError(suggest(uri, DEVICE_SCHEMES, "device"), hint="e.g. emu:rpi4, ssh://pi@raspberrypi.local")


def _step_printer():
    """A progress callback: a rich status line on a terminal, one plain line per step elsewhere."""
    from edgeship import progress
    from edgeship.console import err_console, info

    state = {"status": None, "t0": time.monotonic()}

    def show(i: int, n: int, what: str) -> None:
        elapsed = time.monotonic() - state["t0"]
        if progress.enabled():
            if state["status"] is None:
                state["status"] = err_console().status("")
                state["status"].start()
            if i >= n:
                state["status"].stop()
                return
            state["status"].update(f"[{i + 1}/{n}] {what} ({elapsed:.0f} s so far)")
        elif i < n:
            info(f"[{i + 1}/{n}] {what}")

    return show


def setup(uri: str, rebuild: bool = False, with_executorch: bool = False) -> dict:
    """Prepare the device; returns its doctor report (with 'setup_seconds' and 'setup' added)."""
    from edgeship.console import info
    from edgeship.errors import InputError

    scheme = _scheme(uri)
    if with_executorch and scheme != "ssh":
        raise InputError(f"--with-executorch installs onto ssh:// devices, not {uri}",
                         hint="emu:* has no CPU torch for arm64 (PyPI's is a CUDA build); adb runs .pte with "
                              "--runner executor_runner")
    t0 = time.monotonic()
    if scheme == "emu":
        from edgeship.runtime.emulated import EmulatedDevice, parse_board
        from edgeship.runtime.rootfs import ensure_rootfs

        parse_board(uri)
        path, built = ensure_rootfs(progress=_step_printer(), rebuild=rebuild)
        info(f"{'built' if built else 'cached'} arm64 root filesystem: {path} ({time.monotonic() - t0:.0f} s)")
        report = EmulatedDevice(uri, rootfs=path).probe()
        report["setup"] = "built" if built else "cached"
    elif scheme == "ssh":
        from edgeship.runtime.ssh import SSHDevice

        device = SSHDevice(uri, require_runtime=False)
        report = device.setup(progress=_step_printer(), rebuild=rebuild, with_executorch=with_executorch)
    else:  # the host: nothing to prepare
        report = doctor_report(uri)
        report["setup"] = "nothing to do"
    report["setup_seconds"] = round(time.monotonic() - t0, 1)
    return report


def doctor_report(uri: str) -> dict:
    scheme = _scheme(uri)
    if scheme == "emu":
        from edgeship.runtime.emulated import EmulatedDevice

        return EmulatedDevice(uri).probe()
    if scheme == "ssh":
        from edgeship.runtime.ssh import SSHDevice

        return SSHDevice(uri, require_runtime=False).probe()
    if scheme == "adb":
        from edgeship.runtime.adb import AdbDevice

        return AdbDevice(uri, require_runner=False).probe()
    import json
    import subprocess
    import sys

    from edgeship.runtime.local import parse_agent_stdout

    proc = subprocess.run([sys.executable, "-m", "edgeship.runtime.probe"], capture_output=True, text=True,
                          timeout=300)
    report = json.loads(json.dumps(parse_agent_stdout(proc.stdout) or {"ok": False}))
    report["executorch_native"] = native_probe_for(LocalDevice())
    return report


def print_doctor(uri: str, r: dict) -> bool:
    """The report as a two-column table; returns True when the device can run .tflite artifacts."""
    from rich.table import Table

    from edgeship.console import console

    t = Table(title=f"[bold]{uri}[/]", title_justify="left", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    if r.get("board"):
        t.add_row("board", f"{r['board']} [yellow](emulated: QEMU user mode, -cpu {r['qemu_cpu']})[/]")
    t.add_row("architecture", str(r.get("machine")))
    t.add_row("CPU model", str(r.get("cpu_model") or "unknown"))
    t.add_row("cores", str(r.get("cores")) + (f" (the host's, under QEMU; the board has {r['board_cores']})"
                                              if r.get("board_cores") else ""))
    t.add_row("Python", f"{r.get('python')} ({r.get('python_executable')})")
    tfl = r.get("tflite") or {}
    if tfl.get("available"):
        x = tfl.get("xnnpack") or {}
        t.add_row("TFLite", f"{tfl['runtime']}" + (f" (numpy {tfl['numpy']})" if tfl.get("numpy") else ""))
        t.add_row("XNNPACK", ("[green]active[/]" if x.get("active") else "unknown" if x.get("active") is None
                              else "[red]not active[/]") +
                  f": {x.get('detail', '')}")
    else:
        t.add_row("TFLite", f"[red]unavailable[/]: {tfl.get('reason')}")
    et = r.get("executorch") or {}
    t.add_row("ExecuTorch", f"[green]{et['runtime']}[/]" if et.get("available")
              else f"[red]unavailable[/]: {et.get('reason')}")
    if "executorch_native" in r:
        t.add_row("ExecuTorch (native)", native_row(r["executorch_native"]))
    disk, mem, avail = r.get("disk_free_mb"), r.get("mem_total_mb"), r.get("mem_available_mb")
    t.add_row("free disk", f"{disk / 1024:.1f} GB" if disk is not None else "unknown")
    t.add_row("memory", f"{avail / 1024:.1f} GB available of {mem / 1024:.1f} GB" if mem and avail else "unknown")
    if r.get("rootfs"):
        t.add_row("root filesystem", r["rootfs"])
    if r.get("setup"):
        t.add_row("setup", f"{r['setup']} in {r.get('setup_seconds', 0):.0f} s")
    console().print(t)
    return bool(tfl.get("available"))
