"""One small exception family.

User errors (bad input, unsupported route, failed check) carry a message, a hint and an exit
code; the CLI turns them into one red line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


class EdgeshipError(Exception):
    """An error the user can act on. `hint` says what to try."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(EdgeshipError):
    """A model source, data set, shape or option that cannot be used as given."""


class UnsupportedError(EdgeshipError):
    """A route, recipe or op that edgeship (or the target format) does not support."""


class ConversionError(EdgeshipError):
    """A converter refused the model. The message carries the converter's own last words."""


class ArtifactError(EdgeshipError):
    """An artifact or bundle that is missing, corrupt, or fails to load."""


class CheckFailed(EdgeshipError):
    """A validation check or gate did not pass."""

    exit_code = EXIT_CHECK_FAILED


class DeviceError(EdgeshipError):
    """A device that cannot be reached or used: refused or failed connection, authentication,
    host key, a runtime missing on the device. The message names the device; the hint the fix."""

    exit_code = EXIT_UNREACHABLE


class DeviceUnreachable(DeviceError):
    exit_code = EXIT_UNREACHABLE


def last_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a tool's output, at most LIMIT characters (from its end)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][-limit:] if lines else ""


# what torch appends to an error raised while running or tracing a graph: the node, its source lines and a
# tlparse hint, after the error's own words ('Cannot view a tensor with shape ...')
_TORCH_APPENDIX = re.compile(r"\n\s*(While executing |Original traceback:|from user code:|Use tlparse |"
                             r"Set TORCH_LOGS).*", re.DOTALL)


def error_line(exc: BaseException, with_type: bool = False) -> str:
    """A converter's or runtime's own last words: the root cause's last line, after the outer
    message's (`with_type`: prefixed by the exception's class, for errors whose text is bare)."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)

    def last(e):
        return last_line(_TORCH_APPENDIX.sub("", str(e)), limit=10_000) or type(e).__name__

    outer, root = last(chain[0]), last(chain[-1])
    text = root if len(chain) == 1 or outer == root else f"{outer}: {root}"
    if with_type and text != type(exc).__name__:
        text = f"{type(chain[-1]).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def suggest(word: str, choices, what: str) -> str:
    """'Unknown recipe 'int9'. Did you mean 'int8'? Supported: ...' ."""
    import difflib

    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    msg = f"unknown {what} '{word}'."
    if close:
        msg += f" Did you mean '{close[0]}'?"
    return msg + f" Supported: {', '.join(choices)}"
