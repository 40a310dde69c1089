"""The statuses every record carries: artifact smoke runs, validate records, gate verdicts.

`Status` is a str Enum (as ExecuTorch's export `StageType`): JSON stays plain strings
(`json.dumps(Status.PASS)` is `"pass"`), comparisons with strings read from old reports still
hold, and a typo in code is an AttributeError instead of a silent mismatch.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # the artifact could not be loaded or run
    NOT_MEASURED = "not_measured"  # the measurement could not be taken: never a pass
    SKIPPED = "skipped"  # nothing to compare with (e.g. no baseline record for a new target)
    RAN = "ran"  # it ran, but nothing was there to compare it with: latency and size only

    def __str__(self) -> str:
        return self.value


# A gate with one of these fails the check: a measurement that could not be taken is never a pass.
FAILING = (Status.FAIL, Status.NOT_MEASURED)


def verdict(ok: bool) -> Status:
    return Status.PASS if ok else Status.FAIL
