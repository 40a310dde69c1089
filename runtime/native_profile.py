"""Time per op and per delegate call of a .pte or a .tflite, slowest first (`edgeship bench ARTIFACT
--profile`, whose command and table are in cli/bench.py).

The native runner writes an ETDump (libexecutorch_etdump.so, `--etdump FILE`) covering every
execution of the run (first, per sample, warm-up and timed); ExecuTorch's own Inspector
(executorch.devtools, host only) reads it. XNNPACK records its per-op times at microsecond
resolution, so ops faster than that show 0. Rows are the events
it recorded: portable kernels (`native_call_*`), each delegate call (DELEGATE_CALL), the ops
XNNPACK reports inside its delegate (delegated: yes), and Method::execute, the whole run. On an
emulated device the times are the emulator's and the table says so.

A .tflite runs through edgeship's native LiteRT runner with LiteRT's own profiler on (the compiled
model's runtime option enable_profiling; `litert_runner --profile FILE` writes its events): the
ops LiteRT's kernels run (delegated: no), each op XNNPACK ran inside its delegate (delegated: yes,
XNNPACK's names, microsecond resolution), and LiteRT's own steps per run (Invoke, buffer
registration and sync). ai-edge-litert's Python Interpreter exposes no profiler, so
`--tflite-runtime python` has no per-op table.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeship.errors import InputError

TFLITE_UNAVAILABLE = ("per-op profile: not available for .tflite with --tflite-runtime python: ai-edge-litert's Python "
                      "Interpreter exposes no op profiler (edgeship's native LiteRT runner, the default, has one)")
# LiteRtProfilerEventType (litert/c/litert_profiler_event.h): the kinds of event the table shows
LITERT_EVENTS = {1: False, 2: False, 4: True, 8: True}  # default, operator, delegate op, delegate-profiled op


def parse_litert_profile(path: Path) -> list[dict]:
    """litert_runner's --profile file (type, elapsed_us, node, tag per line) -> the same rows as
    parse_etdump, slowest (total) first. Telemetry events (no duration) are left out."""
    rows: dict[tuple[str, bool], dict] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("\t", 3)
        if len(parts) != 4:
            continue
        kind, elapsed = int(parts[0]), int(parts[1])
        if kind not in LITERT_EVENTS or elapsed >= 2**32:
            continue
        key = (parts[3], LITERT_EVENTS[kind])
        rows.setdefault(key, {"name": key[0], "delegated": key[1], "times": []})["times"].append(elapsed / 1000.0)
    out = []
    for row in rows.values():
        t = np.asarray(row.pop("times"))
        out.append(row | {"count": int(t.size), "p50_ms": float(np.median(t)), "mean_ms": float(t.mean()),
                          "total_ms": float(t.sum())})
    return sorted(out, key=lambda r: -r["total_ms"])


def parse_etdump(path: Path) -> list[dict]:
    """ETDump -> [{name, delegated, count, p50_ms, mean_ms, total_ms}], slowest (total) first."""
    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor debug data, timings only
        inspector = Inspector(etdump_path=str(path))
    rows: dict[tuple[str, bool], dict] = {}
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for e in block.events:
            if e.perf_data is None:
                continue
            raw = [float(v) for v in e.perf_data.raw]
            row = rows.setdefault((e.name, bool(e.is_delegated_op)), {"name": e.name, "delegated": bool(e.is_delegated_op),
                                                                      "times": []})
            row["times"] += raw
    out = []
    for row in rows.values():
        t = np.asarray(row.pop("times"))
        out.append(row | {"count": int(t.size), "p50_ms": float(np.median(t)), "mean_ms": float(t.mean()),
                          "total_ms": float(t.sum())})
    return sorted(out, key=lambda r: -r["total_ms"])


def profile(device, path: Path, inputs, signature, *, warmup=5, runs=50, threads=1) -> dict:
    """Run the artifact once more with ETDump (.pte) or LiteRT's profiler (.tflite) on; {"rows",
    "runtime", "emulated", "source"} or raises InputError."""
    if path.suffix == ".tflite":
        return profile_tflite(device, path, inputs, signature, warmup=warmup, runs=runs, threads=threads)
    if path.suffix != ".pte":
        raise InputError(f"--profile takes a .pte (ETDump) or .tflite (LiteRT profiler) artifact, not '{path.suffix}'")
    if not hasattr(device, "run_native"):
        raise InputError(f"--profile runs on the host or an emulated Pi (local, emu:rpi4, emu:rpi5), not {device.uri}")
    with tempfile.TemporaryDirectory(prefix="edgeship-etdump-") as tmp:
        dump = Path(tmp) / "run.etdump"
        run = device.run_native("pte", path, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                    etdump=str(dump))
        if run is None:
            raise InputError("--profile needs edgeship's native .pte runner (ETDump): it is not available here",
                             hint="install g++ (g++-aarch64-linux-gnu for emu:*), or drop --pte-runtime python")
        if not run.ok:
            raise InputError(f"profiling run failed: {run.error}")
        if not dump.is_file():
            raise InputError("the native runner wrote no ETDump")
        return {"rows": parse_etdump(dump), "runtime": run.result.get("runtime"), "emulated": device.emulated,
                "source": "ETDump"}


def profile_tflite(device, path: Path, inputs, signature, *, warmup=5, runs=50, threads=1) -> dict:
    if not hasattr(device, "run_native"):
        raise InputError(f"--profile runs on the host or an emulated Pi (local, emu:rpi4, emu:rpi5), not {device.uri}")
    with tempfile.TemporaryDirectory(prefix="edgeship-litert-profile-") as tmp:
        events = Path(tmp) / "events.tsv"
        run = device.run_native("litert", path, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                       profile=str(events))
        if run is None:
            raise InputError(TFLITE_UNAVAILABLE, hint="install g++ (g++-aarch64-linux-gnu for emu:*), or drop "
                                                      "--tflite-runtime python")
        if not run.ok:
            raise InputError(f"profiling run failed: {run.error}")
        if not events.is_file():
            raise InputError("the native LiteRT runner wrote no profile")
        return {"rows": parse_litert_profile(events), "runtime": run.result.get("runtime"),
                "emulated": device.emulated, "source": "LiteRT profiler"}
