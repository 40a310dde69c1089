"""Ctrl-C and SIGTERM that are never lost.

Python raises KeyboardInterrupt from a signal handler wherever the interpreter happens to be. When
that is a finalizer or a GC callback (torch's StorageWeakRef.__del__, JAX's _xla_gc_callback, a
WeakValueDictionary's remove), Python prints "Exception ignored in ..." and carries on, and the
export would commit a bundle after the user asked it to stop (seen in CI: exit 0 after SIGTERM).
So the handler also records the request, and the places that make work visible
(BundleWriter.commit, each artifact of an export) call `raise_if_requested()` first.

    with interrupts.handled():
        ...  # KeyboardInterrupt on SIGINT/SIGTERM, and again at the next check if it was swallowed
"""

from __future__ import annotations

import contextlib
import signal

_requested: list[int] = []  # the signals received while handled() was active


def requested() -> bool:
    return bool(_requested)


def raise_if_requested() -> None:
    """Raise KeyboardInterrupt if a SIGINT/SIGTERM arrived, even one whose exception was swallowed."""
    if _requested:
        raise KeyboardInterrupt


def _on_signal(signum, frame):
    _requested.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def handled():
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered until the block ends."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()
