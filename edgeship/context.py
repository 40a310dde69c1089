"""The one place for process state: the runtime choices of the command running now.

A command's --pte-runtime, --tflite-runtime and --runner hold for the devices it opens, and for nothing after it.
They live in ContextVars set by `runtime_choices()`, which the commands enter and which always
resets them on the way out (return, error or sys.exit), so a later call in the same process (an
in-process CLI call, a test, a Python API user) gets the defaults again. Nothing here is written to
os.environ; the environment variables stay user-facing defaults, read where the choice is used:

    with runtime_choices(pte_runtime="python", adb_runners=[path]):
        ...  # devices opened here run .pte with ExecuTorch's Python runtime and push PATH

A choice left out (None, or no runners) keeps what an enclosing `runtime_choices` chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from edgeship.errors import InputError

PTE_RUNTIMES = ("native", "python")
TFLITE_RUNTIMES = ("native", "python")

_pte_runtime: ContextVar[str | None] = ContextVar("edgeship_pte_runtime", default=None)
_tflite_runtime: ContextVar[str | None] = ContextVar("edgeship_tflite_runtime", default=None)
_adb_runners: ContextVar[tuple[Path, ...]] = ContextVar("edgeship_adb_runners", default=())


def pte_runtime() -> str | None:
    """The running command's --pte-runtime ('native' | 'python'), None when it chose none."""
    return _pte_runtime.get()


def tflite_runtime() -> str | None:
    """The running command's --tflite-runtime ('native' | 'python'), None when it chose none."""
    return _tflite_runtime.get()


def adb_runners() -> tuple[Path, ...]:
    """The running command's --runner files for adb devices (absolute paths), () when none."""
    return _adb_runners.get()


def check_pte_runtime(value: str, source: str = "--pte-runtime") -> str:
    value = value.strip().lower()
    if value not in PTE_RUNTIMES:
        raise InputError(f"unknown .pte runtime '{value}' (from {source}); choose {' or '.join(PTE_RUNTIMES)}")
    return value


def check_tflite_runtime(value: str, source: str = "--tflite-runtime") -> str:
    value = value.strip().lower()
    if value not in TFLITE_RUNTIMES:
        raise InputError(f"unknown .tflite runtime '{value}' (from {source}); choose {' or '.join(TFLITE_RUNTIMES)}")
    return value


@contextmanager
def runtime_choices(*, pte_runtime: str | None = None, adb_runners: Iterable = (),
                    tflite_runtime: str | None = None) -> Iterator[None]:
    """PTE_RUNTIME, TFLITE_RUNTIME and ADB_RUNNERS for every device opened inside the block; reset
    when it ends."""
    tokens = []
    if pte_runtime:
        tokens.append((_pte_runtime, _pte_runtime.set(check_pte_runtime(pte_runtime))))
    if tflite_runtime:
        tokens.append((_tflite_runtime, _tflite_runtime.set(check_tflite_runtime(tflite_runtime))))
    runners = tuple(Path(p).resolve() for p in adb_runners or ())
    if runners:
        tokens.append((_adb_runners, _adb_runners.set(runners)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
