"""Shared rich consoles (imported lazily so `edgeship --help` stays fast)."""

from __future__ import annotations

from functools import lru_cache


LOG_WIDTH = 140  # CI logs have no terminal width: don't squeeze tables into 80 columns


@lru_cache(maxsize=None)
def console():
    import sys

    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else LOG_WIDTH)


@lru_cache(maxsize=None)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def info(msg: str) -> None:
    from edgeship import progress

    if not progress._quiet:  # soft_wrap: a line wider than the console is never cut off (logs, live progress)
        err_console().print(msg, soft_wrap=True)


def warn(msg: str) -> None:
    from rich.markup import escape

    err_console().print(f"[yellow]warning:[/] {escape(msg)}", soft_wrap=True)
