"""Children die with their parent: every process edgeship starts (converter children such as the
Keras -> pte torch-backend child, the agent, inspect and probe children, emulated guests) gets
PR_SET_PDEATHSIG, so a SIGKILLed export leaves nothing running that could write after it.

    subprocess.run(cmd, preexec_fn=die_with_parent())

Linux only (prctl through ctypes); elsewhere the hook does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

PR_SET_PDEATHSIG = 1

# JAX (loaded by Keras and LiteRT's converter) warns at every fork that fork and its threads may
# deadlock. edgeship's children exec right after the fork, and the only Python code between the two
# is the prctl below, which takes no lock; so the warning is noise in the user's terminal. Only that
# message is silenced, and only for RuntimeWarning.
warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)


def die_with_parent(sig: int = signal.SIGKILL):
    """A preexec_fn for subprocess: the child gets `sig` when the process that started it dies
    (checked once more after the prctl, for a parent that died in between)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone
            os.kill(os.getpid(), sig)

    return preexec
