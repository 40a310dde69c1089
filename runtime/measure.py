"""The one run path for the runs export makes to decide something (calibration auto, the 8- or 7-bit
.onnx weights, a rewrite's trial, the accuracy-aware and recipe searches): the runner `validate`
uses on this host (runtime/local.py): a child process with a timeout, the native runner for .pte,
the agent for .tflite and .onnx. An artifact that crashes or hangs there fails as a candidate
(`CandidateFailed`), and the export that measured it goes on; ExecuTorch's Python runtime, which
aborts the whole process on some damaged XNNPACK payloads, never runs inside the exporting process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeship.errors import ArtifactError
from edgeship.runtime.local import LocalDevice

DECIDE_TIMEOUT_S = 300.0


class CandidateFailed(ArtifactError):
    """A candidate artifact could not run (crashed, hung, refused to load): it loses, the export goes on."""


def as_arrays(samples: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Samples (one list of inputs each) -> one array per input, samples first, as golden vectors are
    laid out: a batch-of-1 input's samples are concatenated, an input taken whole (an RNN state
    [2, 1, 16], a time-first [8, 8]) is stacked."""
    out = []
    for k in range(len(samples[0])):
        rows = [np.asarray(s[k]) for s in samples]
        out.append(np.concatenate(rows) if rows[0].ndim and rows[0].shape[0] == 1 else np.stack(rows))
    return out


def outputs(path, arrays: list[np.ndarray], timeout: float = DECIDE_TIMEOUT_S) -> list[np.ndarray]:
    """Every output of the artifact at PATH over the samples of ARRAYS (samples first), one array per
    output, from a child process; CandidateFailed with the runtime's words when it cannot run."""
    run = LocalDevice().run_artifact(Path(path), [np.ascontiguousarray(a) for a in arrays], None, warmup=0,
                                     runs=0, timeout=timeout)
    if not run.ok or run.outputs is None:
        raise CandidateFailed(f"{Path(path).name} could not run: {run.error or 'no outputs'}")
    return list(run.outputs)


def outputs_and_p50(path, arrays: list[np.ndarray], warmup: int = 3, runs: int = 20, threads: int = 1,
                    timeout: float = DECIDE_TIMEOUT_S) -> tuple[list[np.ndarray], float, list[float]]:
    """(every output over ARRAYS' samples, p50 ms, per-run ms) from one child run, as validate measures."""
    run = LocalDevice().run_artifact(Path(path), [np.ascontiguousarray(a) for a in arrays], None, threads=threads,
                                     warmup=warmup, runs=runs, timeout=timeout)
    if not run.ok or run.outputs is None:
        raise CandidateFailed(f"{Path(path).name} could not run: {run.error or 'no outputs'}")
    latency = (run.result or {}).get("latency") or {}
    return list(run.outputs), float(latency.get("p50_ms")), [float(x) for x in latency.get("samples_ms") or []]


def p50_ms(path, arrays: list[np.ndarray], warmup: int = 5, runs: int = 20, threads: int = 1,
           timeout: float = DECIDE_TIMEOUT_S) -> tuple[float, list[float]]:
    """(p50 ms, per-run ms) of the artifact on ARRAYS' first sample, timed by the same runner."""
    first = [np.ascontiguousarray(a[:1]) for a in arrays]
    run = LocalDevice().run_artifact(Path(path), first, None, threads=threads, warmup=warmup, runs=runs,
                                     timeout=timeout)
    if not run.ok:
        raise CandidateFailed(f"{Path(path).name} could not run: {run.error}")
    latency = (run.result or {}).get("latency") or {}
    return float(latency.get("p50_ms")), [float(x) for x in latency.get("samples_ms") or []]
