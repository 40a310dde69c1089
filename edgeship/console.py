"""edgeship's one terminal state: the rich consoles, quiet mode, step messages, warnings, error
lines and progress bars. Every module that prints goes through here.

Quiet (--quiet) turns step messages and progress bars off; progress bars are also off on a
non-TTY (CI logs) or with CI=true, so logs stay clean. rich is imported on first use so
`edgeship --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
LOG_WIDTH = 140  # CI logs have no terminal width: don't squeeze tables into 80 columns

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


@lru_cache(maxsize=None)
def console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else LOG_WIDTH)


@lru_cache(maxsize=None)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def escape(text) -> str:
    """User and runtime text, safe to print with rich markup ('[tool.edgeship]' stays as it is)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def info(msg: str) -> None:
    if not _state["quiet"]:  # soft_wrap: a line wider than the console is never cut off (logs, live progress)
        err_console().print(msg, soft_wrap=True)


def warn(msg: str) -> None:
    err_console().print(f"[yellow]warning:[/] {escape(msg)}", soft_wrap=True)


def error_line(message: str, hint: str | None = None) -> None:
    """One red line saying what was wrong, and a dim one saying what to try."""
    err_console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console().print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)


def progress_enabled() -> bool:
    return not _state["quiet"] and sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """A progress bar over ITEMS on a terminal; the items alone elsewhere."""
    if not progress_enabled():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as progress:
        yield from progress.track(items, total=total, description=description)
