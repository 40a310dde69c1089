"""Time per op and per delegate call of a .pte, slowest first (`edgeship bench ARTIFACT.pte --profile`,
whose command and table are in cli/bench.py).

The native runner writes an ETDump (libexecutorch_etdump.so, `--etdump FILE`) covering every
execution of the run (first, per sample, warm-up and timed); ExecuTorch's own Inspector
(executorch.devtools, host only) reads it. XNNPACK records its per-op times at microsecond
resolution, so ops faster than that show 0. Rows are the events
it recorded: portable kernels (`native_call_*`), each delegate call (DELEGATE_CALL), the ops
XNNPACK reports inside its delegate (delegated: yes), and Method::execute, the whole run. On an
emulated device the times are the emulator's and the table says so. LiteRT's Python Interpreter
exposes no op profiler (benchmark_model's --enable_op_profiling is a separate native tool), so
for a .tflite this says it is not available.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeship.errors import InputError

TFLITE_UNAVAILABLE = ("per-op profile: not available for .tflite: ai-edge-litert's Python Interpreter exposes no op "
                      "profiler (LiteRT's native benchmark_model --enable_op_profiling has one)")


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
    """Run the artifact once more with ETDump on; {"rows", "runtime", "emulated"} or raises InputError."""
    if path.suffix == ".tflite":
        raise InputError(TFLITE_UNAVAILABLE)
    if path.suffix != ".pte":
        raise InputError(f"--profile takes a .pte (ETDump) artifact, not '{path.suffix}'")
    if not hasattr(device, "run_native_pte"):
        raise InputError(f"--profile runs on the host or an emulated Pi (local, emu:rpi4, emu:rpi5), not {device.uri}")
    with tempfile.TemporaryDirectory(prefix="edgeship-etdump-") as tmp:
        dump = Path(tmp) / "run.etdump"
        run = device.run_native_pte(path, inputs, signature, threads=threads, warmup=warmup, runs=runs,
                                    etdump=str(dump))
        if run is None:
            raise InputError("--profile needs edgeship's native .pte runner (ETDump): it is not available here",
                             hint="install g++ (g++-aarch64-linux-gnu for emu:*), or drop --pte-runtime python")
        if not run.ok:
            raise InputError(f"profiling run failed: {run.error}")
        if not dump.is_file():
            raise InputError("the native runner wrote no ETDump")
        return {"rows": parse_etdump(dump), "runtime": run.result.get("runtime"), "emulated": device.emulated}
