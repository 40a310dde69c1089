"""The results store: a folder, local or on any shared mount, of finished jobs by key.

    DIR/<key>/result.json     a finished job (an export's bundle beside it: DIR/<key>/bundle/)
    DIR/.claims/<key>         who runs the job now: created with O_EXCL, so one shard wins a race;
                              its mtime is a heartbeat, refreshed while the job runs
    DIR/.staging/<key>.<id>/  a job being written; moved to DIR/<key> by one rename when complete

A result is there whole or not at all, and a second writer's rename fails rather than replace the
first's. A claim whose holder died (same host, process gone) or went silent (no heartbeat for
STALE_S) is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from edgeship.errors import InputError

STALE_S = 180.0  # a claim not refreshed for this long is a dead holder's
HEARTBEAT_S = 20.0
RESULT = "result.json"


class Store:
    def __init__(self, root: Path, create: bool = True):
        self.root = Path(root)
        if create:
            try:
                for d in (self.root, self.root / ".claims", self.root / ".staging"):
                    d.mkdir(parents=True, exist_ok=True)
                probe = self.root / ".staging" / f".probe-{uuid.uuid4().hex}"
                probe.write_text("")
                probe.unlink()
            except OSError as e:
                raise InputError(f"results store '{self.root}' is not writable: {e.strerror}",
                                 hint="pass --results DIR on a writable (or shared) mount") from None
        elif not self.root.is_dir():
            raise InputError(f"no results store at '{self.root}'",
                             hint="run the jobs first: edgeship run --plan plan.json --results DIR")

    def path(self, key: str) -> Path:
        return self.root / key

    def result(self, key: str) -> dict | None:
        try:
            return json.loads((self.root / key / RESULT).read_text())
        except (OSError, ValueError):
            return None

    def done(self, key: str) -> bool:
        return (self.root / key / RESULT).is_file()

    def results(self) -> list[dict]:
        """Every finished job's result in the store, with its folder ('path')."""
        out = []
        for f in sorted(self.root.glob(f"*/{RESULT}")):
            with contextlib.suppress(OSError, ValueError):
                out.append({**json.loads(f.read_text()), "path": str(f.parent)})
        return out

    # -- claims ---------------------------------------------------------------------------------

    def _claim_path(self, key: str) -> Path:
        return self.root / ".claims" / key

    def try_claim(self, key: str) -> Claim | None:
        """The job's claim when this process won it, None when another holder has it."""
        path = self._claim_path(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return None
                self._break(path)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
            return Claim(path)
        return None

    def claimed(self, key: str) -> bool:
        path = self._claim_path(key)
        return path.exists() and not self._stale(path)

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            owner = json.loads(path.read_text() or "{}")
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return False  # being written, or just removed
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            try:
                os.kill(owner["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return age > STALE_S

    @staticmethod
    def _break(path: Path) -> None:
        """Remove a stale claim; of two breakers, one renames it away, the other finds it gone."""
        with contextlib.suppress(OSError):
            gone = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
            os.rename(path, gone)
            gone.unlink()

    # -- writing --------------------------------------------------------------------------------

    def staging(self, key: str) -> Path:
        d = self.root / ".staging" / f"{key}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def commit(self, key: str, staging: Path, result: dict) -> bool:
        """Write result.json into STAGING and move it to DIR/<key> in one rename; False (and STAGING
        removed) when another writer's result is already there."""
        tmp = staging / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, staging / RESULT)
        try:
            os.rename(staging, self.root / key)
            return True
        except OSError:  # EEXIST/ENOTEMPTY: the key is already stored
            shutil.rmtree(staging, ignore_errors=True)
            return False


    def journal(self, event: str, key: str) -> None:
        """One line per job this process ran (or whose result it dropped): DIR/.journal/<host>.<pid>.jsonl."""
        d = self.root / ".journal"
        d.mkdir(exist_ok=True)
        with open(d / f"{socket.gethostname()}.{os.getpid()}.jsonl", "a") as f:
            f.write(json.dumps({"event": event, "key": key, "unix": time.time()}) + "\n")

    def journal_entries(self) -> list[dict]:
        out = []
        for f in sorted((self.root / ".journal").glob("*.jsonl")):
            out += [{**json.loads(line), "by": f.stem} for line in f.read_text().splitlines() if line.strip()]
        return out


class Claim:
    """A held claim: its heartbeat refreshes the file's mtime until released."""

    def __init__(self, path: Path):
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
