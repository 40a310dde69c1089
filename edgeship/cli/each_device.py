"""Several `--device` options: run on each device in turn, one table per device.

One behaviour for every command that loops (validate, bench): a device that cannot be reached
(or used) is reported in one red line with its hint, the others still run, and the command
exits 3. With one device, its errors are the command's errors (exit 3 through the CLI). The JSON
report of one device keeps its usual shape; with several, `context.devices` lists each device's
context, `context.unreachable` the ones that could not be used, and every record names its device.
This is the CLI's loop (the Python API validates one device per call); the engines it runs are
imported where they run, so the commands' --help loads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import click

from edgeship.console import error_line
from edgeship.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNREACHABLE, DeviceError
from edgeship.status import Status

DEVICE_HELP = "Where to run: local, emu:rpi4, emu:rpi5, ssh://user@host[:port], adb[:SERIAL]. Repeat to run on each."
RUNNER_HELP = ("adb devices: your own native runner to push instead of edgeship's (the default: its aarch64 "
               "runners with their own glibc loader): LiteRT's benchmark_model for .tflite, ExecuTorch's "
               "executor_runner for .pte (a name holding 'executor_runner' runs .pte). Repeat for both.")


def device_options(f):
    """--device (repeatable), --runner, --pte-runtime and --tflite-runtime, shared by validate and bench."""
    f = click.option("--tflite-runtime", type=click.Choice(["native", "python"]), help=".tflite: edgeship's native "
                     "LiteRT runner (default; built at first use, libLiteRt.so's C API) or ai-edge-litert's Python "
                     "interpreter. Env: EDGESHIP_TFLITE_RUNTIME.")(f)
    f = click.option("--pte-runtime", type=click.Choice(["native", "python"]), help=".pte: edgeship's native "
                     "ExecuTorch runner (default; built at first use) or ExecuTorch's Python runtime (needs torch). "
                     "Env: EDGESHIP_PTE_RUNTIME.")(f)
    f = click.option("--runner", type=click.Path(path_type=Path), multiple=True,
                     help=RUNNER_HELP)(f)
    return click.option("--device", multiple=True, default=["local"], show_default=True, help=DEVICE_HELP)(f)


@dataclass
class Fanout:
    """What running on several devices gave: every record, each device's context, the unreachable ones."""

    results: list[dict] = field(default_factory=list)
    contexts: list[dict] = field(default_factory=list)
    unreachable: list[dict] = field(default_factory=list)


def each_device(uris: list[str], run_one: Callable[[str], tuple[list[dict], dict]]) -> Fanout:
    """run_one(uri) -> (records, context) on each device; a DeviceError is printed with its hint and
    recorded, and the loop goes on. With one device the error propagates (the command's error)."""
    out = Fanout()
    for uri in uris:
        try:
            results, context = run_one(uri)
        except DeviceError as e:
            if len(uris) == 1:
                raise
            error_line(e.message, e.hint)
            out.unreachable.append({"device": uri, "error": e.message, "hint": e.hint})
            continue
        out.results += results
        out.contexts.append(context)
    return out


def merged_context(uris: list[str], fan: Fanout, **extra) -> dict:
    if len(uris) == 1 and fan.contexts:
        return fan.contexts[0]
    return {**(fan.contexts[0] if fan.contexts else {}), **extra, "device": ", ".join(uris),
            "emulated": any(c.get("emulated") for c in fan.contexts), "devices": fan.contexts,
            "unreachable": fan.unreachable}


def exit_code(fan: Fanout, failed: Callable[[dict], bool]) -> int:
    if fan.unreachable:
        return EXIT_UNREACHABLE
    return EXIT_CHECK_FAILED if any(failed(r) for r in fan.results) else EXIT_OK


def unique(uris) -> list[str]:
    return list(dict.fromkeys(uris)) or ["local"]


def validate_on_devices(req, uris: list[str], json_path=None) -> int:
    """`edgeship validate --device A --device B`: tables per device; 0 all passed, 1 one did not, 3 unreachable."""
    from edgeship.reports.tables import print_validate, write_json
    from edgeship.validation import validate

    uris = unique(uris)

    def run_one(uri):
        results, context = validate(replace(req, device=uri))
        print_validate(results, context)
        return results, context

    fan = each_device(uris, run_one)
    if json_path:
        write_json(json_path, fan.results, merged_context(uris, fan))
    return exit_code(fan, lambda r: r["status"] not in (Status.PASS, Status.RAN))
