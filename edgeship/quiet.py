"""Quiet by default: while export converts, everything the converters and frameworks print (C++
logs on fds 1 and 2, Python warnings, logging records, tracebacks they print and swallow) goes to
`export.log` in the bundle's staging folder, and only edgeship's own lines reach the terminal.

The log ships inside the bundle. When the export fails it is kept beside the destination
(`<out>.export.log`) and named in the error's hint; an interrupt (Ctrl-C, SIGTERM) keeps nothing.
With --verbose nothing is redirected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from edgeship.console import err_console
from edgeship.errors import EdgeshipError

LOG_NAME = "export.log"


def kept_log_path(dest: Path) -> Path:
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.export.log")


# What the frameworks printed while the model loaded (before the bundle's staging folder, and so its
# log, exists): held here and written at the top of the export's log.
_held: list[str] = []


@contextlib.contextmanager
def loading_output_held(verbose: bool = False):
    """While the model loads, framework output (TensorFlow's absl and oneDNN lines on fd 2, Keras'
    warnings) is held back from the terminal; `converter_output_to_log` writes it into export.log.
    A load that fails drops it: the error line says what was wrong."""
    if verbose:
        yield
        return
    with tempfile.TemporaryFile("w+", errors="replace") as held:
        with _redirected(held):
            yield
        held.seek(0)
        if text := held.read():
            _held.append(text)


@contextlib.contextmanager
def converter_output_to_log(staging: Path, dest: Path, verbose: bool = False):
    if verbose:
        yield None
        return

    log_path = Path(staging) / LOG_NAME
    log = open(log_path, "a", buffering=1, errors="replace")
    if _held:
        log.write("--- framework output while the model loaded ---\n" + "".join(_held) + "--- conversion ---\n")
        _held.clear()
    failed = False
    try:
        with _redirected(log):
            yield log_path
    except Exception as e:  # a failure: keep the log (an interrupt writes nothing, the log included)
        failed = True
        _keep(log, log_path, dest, e)
        raise
    except BaseException:
        failed = True
        log.close()
        raise
    finally:
        if not failed:
            log.close()


@contextlib.contextmanager
def fds_redirected(sink, fds=(1, 2)):
    """The one fd redirect: file descriptors `fds` (C++ logging, native prints) write to the open
    file `sink` for the block and are put back after. Yields {fd: a dup of the original}, valid
    inside the block (for a stream that must keep reaching the terminal). quiet.py's export log and
    convert/tflite_common.py's quiet_native_output both stand on it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        yield saved
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)


def writes_to_fd(stream, fd: int) -> bool:
    """Whether a Python stream writes straight to file descriptor `fd` (not a test runner's capture)."""
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _redirected(log):
    """fds 1 and 2, Python warnings and logging records go to `log`; edgeship's console keeps the terminal."""
    console = err_console()
    handler = logging.StreamHandler(log)
    root = logging.getLogger()
    with fds_redirected(log) as saved:
        # edgeship's own lines keep going where they went: the terminal behind fd 2, or a stream that
        # stands in for it (a test runner's capture), which the fd redirection does not touch.
        terminal = (os.fdopen(os.dup(saved[2]), "w", buffering=1, errors="replace")
                    if writes_to_fd(sys.stderr, 2) else None)
        root.addHandler(handler)
        try:
            console.file = terminal or sys.stderr
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.showwarning = lambda msg, cat, fname, lineno, file=None, line=None: log.write(
                    warnings.formatwarning(msg, cat, fname, lineno, line))
                yield
        finally:
            console.file = None  # back to following sys.stderr
            root.removeHandler(handler)
            if terminal is not None:
                terminal.close()


def _keep(log, log_path: Path, dest: Path, error: BaseException) -> None:
    """Copy the log out of the staging folder (removed on failure) and name it in the error."""
    log.flush()
    log.close()
    kept = kept_log_path(dest)
    try:
        shutil.copyfile(log_path, kept)
    except OSError:
        return
    if isinstance(error, EdgeshipError):
        note = f"the converters' output is in {kept}"
        error.hint = f"{error.hint}; {note}" if error.hint else note
