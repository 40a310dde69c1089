"""Several `--device` options: validate on each device in turn, one pair of tables per device.

A device that cannot be reached (or used) is reported in one red line and the others still run;
the exit code is then 3. Otherwise 1 when any artifact on any device failed or errored, else 0
("ran": measured, accuracy not checked, exits 0 and says so in the table). The
JSON report of one device keeps its usual shape; with several, `context.devices` lists each
device's context and every artifact record names its device.
"""

from __future__ import annotations

from dataclasses import replace

from edgeship.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNREACHABLE, DeviceError


def validate_on_devices(req, uris: list[str], json_path=None) -> int:
    from edgeship.console import err_console
    from rich.markup import escape
    from edgeship.report import print_validate, write_json
    from edgeship.validate import validate

    uris = list(dict.fromkeys(uris)) or ["local"]
    if len(uris) == 1:  # one device: its errors are the command's errors (exit 3 through the CLI)
        results, context = validate(replace(req, device=uris[0]))
        print_validate(results, context)
        if json_path:
            write_json(json_path, results, context)
        return EXIT_OK if all(r["status"] in ("pass", "ran") for r in results) else EXIT_CHECK_FAILED
    all_results, contexts, unreachable = [], [], []
    for uri in uris:
        try:
            results, context = validate(replace(req, device=uri))
        except DeviceError as e:
            err_console().print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
            if e.hint:
                err_console().print(f"[dim]hint:[/] {escape(e.hint)}", soft_wrap=True)
            unreachable.append({"device": uri, "error": e.message, "hint": e.hint})
            continue
        print_validate(results, context)
        all_results += results
        contexts.append(context)
    if json_path:
        context = {**(contexts[0] if contexts else {}), "device": ", ".join(uris),
                   "emulated": any(c.get("emulated") for c in contexts), "devices": contexts,
                   "unreachable": unreachable}
        write_json(json_path, all_results, context)
    if unreachable:
        return EXIT_UNREACHABLE
    return EXIT_OK if all(r["status"] in ("pass", "ran") for r in all_results) else EXIT_CHECK_FAILED
