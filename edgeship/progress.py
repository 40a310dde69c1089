"""Progress bars for long steps (calibration, export, device runs).

rich draws them on a terminal; on a non-TTY (CI logs) or with --quiet nothing is drawn.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    if not enabled():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgeship.console import err_console

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as progress:
        yield from progress.track(items, total=total, description=description)
