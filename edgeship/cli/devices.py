"""`edgeship devices setup URI` and `edgeship devices doctor URI`.

setup prepares a device: for emu:* it builds (once) the cached arm64 root filesystem, with no
Python package in it (the native runners run .tflite and .pte; --with-python adds numpy,
ai-edge-litert and onnxruntime beside it for .onnx and the Python runtimes); for ssh://
it pushes edgeship's native runners and, where the device has python3, installs the Python
runtimes (.onnx needs them) into a virtual environment there. doctor shows what the device
can run: architecture, CPU model, cores, Python, the TFLite runtime and whether XNNPACK is active,
whether ExecuTorch is available (and why not), free disk and memory.
"""

from __future__ import annotations

import json
import sys
import time

import click

from edgeship.cli.groups import SuggestingGroup
from edgeship.console import console, err_console, info, progress_enabled
from edgeship.errors import EXIT_CHECK_FAILED, InputError


def _step_printer():
    """A progress callback: a rich status line on a terminal, one plain line per step elsewhere."""
    state = {"status": None, "t0": time.monotonic()}

    def show(i: int, n: int, what: str) -> None:
        elapsed = time.monotonic() - state["t0"]
        if progress_enabled():
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


def setup(uri: str, rebuild: bool = False, with_executorch: bool = False, with_python: bool = False) -> dict:
    """Prepare the device (its class's `prepare`); returns its doctor report (with 'setup_seconds' and
    'setup' added). An option the device's kind does not take is an InputError, before any work."""
    from edgeship.runtime.device import DEVICES, device_class

    cls = device_class(uri)
    options = {name: True for name, given in (("with_executorch", with_executorch), ("with_python", with_python))
               if given}
    for name in options:
        if name not in cls.setup_options:
            what = next(kind.setup_options[name] for kind in DEVICES.values() if name in kind.setup_options)
            takes = ", ".join(f"--{n.replace('_', '-')}" for n in cls.setup_options) or "no options"
            instead = cls.setup_instead.get(name)
            raise InputError(f"--{name.replace('_', '-')} {what}, not {uri}",
                             hint=f"{instead}; `edgeship devices setup {uri}` takes {takes}" if instead
                             else f"`edgeship devices setup {uri}` takes {takes}")
    t0 = time.monotonic()
    report = cls.prepare(uri, progress=_step_printer(), rebuild=rebuild, **options)
    report["setup_seconds"] = round(time.monotonic() - t0, 1)
    return report


def doctor_report(uri: str) -> dict:
    from edgeship.runtime.device import open_device

    return open_device(uri).probe()


def print_doctor(uri: str, r: dict) -> bool:
    """The report as a two-column table; returns True when the device can run .tflite artifacts."""
    from rich.markup import escape
    from rich.table import Table

    from edgeship.runtime.native import native_row
    from edgeship.runtime.native_build import SPECS

    t = Table(title=f"[bold]{uri}[/]", title_justify="left", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value", overflow="fold")
    if r.get("board"):
        t.add_row("board", f"{r['board']} [yellow](emulated: QEMU user mode, -cpu {r['qemu_cpu']})[/]")
    t.add_row("architecture", str(r.get("machine")))
    t.add_row("CPU model", str(r.get("cpu_model") or "unknown"))
    t.add_row("cores", str(r.get("cores")) + (f" (the host's, under QEMU; the board has {r['board_cores']})"
                                              if r.get("board_cores") else ""))
    if r.get("probe") == "shell":  # ssh://: what the device has, found by its POSIX shell
        _device_rows(t, r, uri)
    else:
        t.add_row("Python", f"{r.get('python')} ({r.get('python_executable')})")
    if r.get("board"):  # emu:*: the guest's packages live beside the root filesystem, when installed
        t.add_row("Python side", escape(r["python_side"]) if r.get("python_side") else
                  "[yellow]none[/] (not needed for .tflite, .pte and .onnx; the Python runtimes install it: "
                  f"`edgeship devices setup {escape(uri)} --with-python`)")
    tfl = r.get("tflite") or {}
    py = " (Python)" if r.get("formats") else ""  # beside the native runners' rows
    if tfl.get("available"):
        x = tfl.get("xnnpack") or {}
        t.add_row("TFLite" + py, f"{tfl['runtime']}" + (f" (numpy {tfl['numpy']})" if tfl.get("numpy") else ""))
        t.add_row("XNNPACK", ("[green]active[/]" if x.get("active") else "unknown" if x.get("active") is None
                              else "[red]not active[/]") +
                  f": {x.get('detail', '')}")
    else:
        t.add_row("TFLite" + py, f"[red]unavailable[/]: {tfl.get('reason')}")
    et = r.get("executorch") or {}
    t.add_row("ExecuTorch" + py, f"[green]{et['runtime']}[/]" if et.get("available")
              else f"[red]unavailable[/]: {et.get('reason')}")
    for spec in SPECS.values():
        if spec.report_key in r:
            t.add_row(f"{spec.title} (native)", native_row(r[spec.report_key]))
    disk, mem, avail = r.get("disk_free_mb"), r.get("mem_total_mb"), r.get("mem_available_mb")
    t.add_row("free disk", f"{disk / 1024:.1f} GB" if disk is not None else "unknown")
    t.add_row("memory", f"{avail / 1024:.1f} GB available of {mem / 1024:.1f} GB" if mem and avail else "unknown")
    if r.get("rootfs"):
        t.add_row("root filesystem", r["rootfs"])
    for ext, f in (r.get("formats") or {}).items():
        t.add_row(f"runs {ext}", ("[green]yes[/]: " if f["runs"] else "[red]no[/]: ") + escape(f["how"]))
    if r.get("setup"):
        t.add_row("setup", f"{r['setup']} in {r.get('setup_seconds', 0):.0f} s")
    console().print(t)
    return runs_tflite(r)


def runs_tflite(r: dict) -> bool:
    """Whether the report's device runs .tflite: its formats (ssh://), else the Python runtime."""
    if r.get("formats"):
        return bool(r["formats"][".tflite"]["runs"])
    return bool((r.get("tflite") or {}).get("available"))


def _device_rows(t, r: dict, uri: str) -> None:
    """python3, the venv and the cached native runners of an ssh:// device."""
    from rich.markup import escape

    t.add_row("OS", escape(" · ".join(str(x) for x in (r.get("os"), r.get("kernel") and f"kernel {r['kernel']}",
                                                     r.get("libc")) if x) or "unknown"))
    t.add_row("python3", f"yes: {r.get('python')} ({escape(str(r.get('python_executable')))})" if r.get("python3")
              else "[yellow]no[/] (not needed for .tflite, .pte and .onnx)")
    t.add_row("venv", "yes: ~/.edgeship/venv" + (" with onnxruntime" if r.get("onnxruntime") else " (no onnxruntime)")
              if r.get("venv") else f"[yellow]no[/] (only the Python runtimes need it: "
              f"`edgeship devices setup {escape(uri)}`)")
    from edgeship.runtime.native_build import SPECS

    cached = [(spec.title, n) for spec in SPECS.values() if (n := r.get(spec.report_key) or {}).get("location")]
    t.add_row("native runners", "; ".join(
        f"{name}: {'cached' if n.get('cached_before') else 'pushed now'} in {escape(n['location'])}"
        for name, n in cached) or "[yellow]none cached[/] (pushed at first use)")


@click.group("devices", cls=SuggestingGroup)
def group():
    """Prepare and inspect devices: local, emu:rpi4, emu:rpi5, ssh://user@host[:port], adb[:SERIAL]."""


@group.command("setup")
@click.argument("uri")
@click.option("--rebuild", is_flag=True, help="Rebuild even when a prepared runtime is cached.")
@click.option("--with-executorch", is_flag=True, help="ssh:// devices: also install ExecuTorch's runtime (torch "
              "from PyTorch's CPU index, executorch from PyPI), fetched by this host.")
@click.option("--with-python", is_flag=True, help="emu:* devices: also install numpy, ai-edge-litert and onnxruntime "
              "for the guest's Python (--tflite-runtime python and EDGESHIP_ONNX_RUNTIME=python need them; "
              ".tflite, .pte and .onnx do not).")
@click.option("--json", "as_json", is_flag=True, help="Print the device report as JSON.")
def setup_command(uri, rebuild, with_executorch, with_python, as_json):
    """Prepare URI: emu:* builds and caches the arm64 root filesystem (once), with no Python
    package in it: edgeship's native runners run .tflite, .pte and .onnx there (--with-python adds the
    Python side the Python runtimes need);
    ssh:// pushes edgeship's native runners (all .tflite, .pte and .onnx need) and, where the device has
    python3, installs numpy, ai-edge-litert and onnxruntime into a virtual environment there for
    the Python runtimes (with --with-executorch also torch and executorch)."""
    report = setup(uri, rebuild=rebuild, with_executorch=with_executorch, with_python=with_python)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not print_doctor(uri, report):
        sys.exit(EXIT_CHECK_FAILED)


@group.command("doctor")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def doctor_command(uri, as_json):
    """Show what URI can run: architecture, CPU, cores, Python, LiteRT and XNNPACK, ExecuTorch
    (and why not), free disk and memory; for ssh:// also python3, the venv, the native runners
    cached there and which formats run. Exits 1 when it cannot run .tflite artifacts."""
    report = doctor_report(uri)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        ok = runs_tflite(report)
    else:
        ok = print_doctor(uri, report)
    if not ok:
        sys.exit(EXIT_CHECK_FAILED)
