"""Independent conversions of one export in forked processes (`export --jobs N`).

export prepares once (the model, calibration data, golden vectors, rewrite plans) and then converts
each format on its own. Those conversions share nothing but what was prepared, so each format can run
in a child forked after the preparation: the child inherits the prepared model and data as they are
(no re-load, and an in-memory model of the Python API works too), writes its artifacts into the
bundle's staging folder, and hands its records back through a file.

Forked only where a fork is safe. PyTorch survives a fork on one thread (its DataLoader workers rely on
it; a child of ours runs torch on one thread, as they do). TensorFlow's and JAX's thread pools do not,
so when either is already loaded in this process (a Keras or SavedModel source) the formats run one
after another, as with --jobs 1.

A child that dies (a converter's SIGSEGV, the OOM killer) fails its own task: `on_death` turns the
death into that task's result, from what the child had reported with `so_far()` before it died (the
recipes it had finished), and the other tasks go on. An interrupt kills every child.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from edgeship.children import die_with_parent
from edgeship.errors import EdgeshipError

T = TypeVar("T")
R = TypeVar("R")

# Loaded in this process, these make a fork unsafe: their worker threads do not exist in the child,
# and a child that waits on them hangs.
FORK_UNSAFE = ("tensorflow", "jax")


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def why_serial(jobs: int, tasks: int) -> str | None:
    """None when `tasks` can run in `jobs` forked children; else why they run one after another."""
    if jobs <= 1 or tasks <= 1:
        return "one job" if jobs <= 1 else "one task"
    if not hasattr(os, "fork"):
        return "this platform has no fork"
    loaded = [m for m in FORK_UNSAFE if m in sys.modules]
    if loaded:
        return f"{' and '.join(loaded)} is loaded, and its threads do not survive a fork"
    return None


_progress: list[Path] = []  # in a child: where so_far() writes


def so_far(value) -> None:
    """In a forked child: what the task has done until now, handed to `on_death` if the child dies
    before it returns. Elsewhere (a serial run): nothing to do."""
    if _progress:
        partial = _progress[0].with_suffix(".partial")
        partial.write_bytes(pickle.dumps(value))
        partial.replace(_progress[0].with_suffix(".so-far"))


def run_each(tasks: Sequence[T], work: Callable[[T], R], jobs: int, on_death: Callable[[T, str, object], R]) \
        -> list[R]:
    """[work(t) for t in tasks], up to `jobs` at a time in forked children when why_serial() allows,
    in order. An EdgeshipError raised in a child is raised here (the first, after every child ended).
    A child that dies gives on_death(task, why, its last so_far() value or None)."""
    if why_serial(jobs, len(tasks)) is not None:
        return [work(t) for t in tasks]
    results: dict[int, R] = {}
    raised: list[BaseException] = []
    running: dict[int, tuple[int, Path]] = {}  # pid -> (task index, result file)
    pending = list(range(len(tasks)))
    with tempfile.TemporaryDirectory(prefix="edgeship-jobs-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    i = pending.pop(0)
                    path = Path(tmp) / f"{i}.pickle"
                    running[_start(work, tasks[i], path)] = (i, path)
                pid, status = _wait_one(running)
                i, path = running.pop(pid)
                kind, value = _read(path, status)
                if kind == "ok":
                    results[i] = value
                elif kind == "raised":
                    raised.append(value)
                else:
                    reported = path.with_suffix(".so-far")
                    results[i] = on_death(tasks[i], value,
                                          pickle.loads(reported.read_bytes()) if reported.exists() else None)
        except BaseException:
            _kill(running)
            raise
    if raised:
        raise raised[0]
    return [results[i] for i in range(len(tasks))]


def _wait_one(running: dict) -> tuple[int, int]:
    """The first of our children to end (only ours: another child of this process is not reaped here)."""
    while True:
        for pid in running:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return pid, status
        time.sleep(0.05)


def _start(work, task, path: Path) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    with_parent = die_with_parent()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:  # the child: never returns into the parent's stack
        if with_parent is not None:
            with_parent()
        _one_thread()
        _progress[:] = [path]
        try:
            payload = ("ok", work(task))
        except EdgeshipError as e:
            payload = ("raised", (type(e), e.message, e.hint))
        except KeyboardInterrupt:
            payload, code = None, 130
        except BaseException:  # noqa: BLE001 - a bug in the child: its traceback, raised in the parent
            payload = ("raised", (RuntimeError, traceback.format_exc(), None))
        if payload is not None:
            path.write_bytes(pickle.dumps(payload))
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _one_thread() -> None:
    """PyTorch's OpenMP pool is gone in a forked child, and a parallel region over it hangs (seen: a
    conv and a clone, each waiting forever). With one thread ATen and oneDNN run inline, as in
    PyTorch's own DataLoader workers, which set the same."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _read(path: Path, status: int) -> tuple[str, object]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "died", f"its conversion process was killed by signal {sig} ({signal.Signals(sig).name})"
    if not path.exists():
        return "died", (f"its conversion process exited with status {os.waitstatus_to_exitcode(status)} "
                        "and no result")
    kind, value = pickle.loads(path.read_bytes())  # our own child's file, written just now
    if kind == "raised":
        cls, message, hint = value
        try:
            value = cls(message, hint=hint)
        except TypeError:
            value = RuntimeError(message)
    return kind, value


def _kill(running: dict) -> None:
    for pid in running:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in running:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
