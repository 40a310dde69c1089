"""The agent: load one artifact, run inputs through it, time it, report JSON. Standalone.

Runs in a child process on the host (`python -m edgeship.runtime.standalone.agent`), or pushed with its
sibling modules to a device as a package (`python3 -m edgeship_agent.agent`). It needs the
standard library, numpy and the artifact's runtime; never PyTorch or TensorFlow.

    agent run ARTIFACT --inputs in.npz --out out.npz [--signature sig.json]
                       [--threads 1] [--warmup 5] [--runs 50] [--max-seconds 30]
    agent inspect ARTIFACT

in.npz holds input_0..input_K, each (N, ...): row i is sample i, fed in the artifact's input shape
(a batch of one, or a whole tensor such as an RNN state); out.npz gets output_0..output_M, each
the samples' outputs concatenated on the first axis.
The last line on stdout is one JSON object: {"ok": true, ...} or {"ok": false, "stage", "error"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback

import numpy as np

from . import timing

RUNNERS = {".tflite": "tflite", ".pte": "executorch", ".onnx": "onnx"}


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ru_maxrss would report the parent's peak, which Linux carries across fork + exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _load_runner_class(path: str):
    ext = os.path.splitext(path)[1]
    if ext not in RUNNERS:
        raise ValueError(f"unknown artifact type '{ext}' (expected .tflite, .pte or .onnx)")
    import importlib

    return importlib.import_module(f"{__package__}.{RUNNERS[ext]}").Runner


def _sample(a, i: int, spec: dict):
    """Row i of an input array (N, ...) in the artifact's input shape. A row of an input with a
    batch axis is (1, ...) already; a whole tensor (an RNN state (2, 1, 128), a time-first (6, 4))
    is a[i]. Shapes the artifact leaves open, or a size that differs, keep a[i:i+1], which the
    runner then refuses with its own words."""
    shape = [int(d) for d in (spec or {}).get("shape") or []]
    row = a[i : i + 1]
    if shape and all(d >= 0 for d in shape) and int(np.prod(shape)) == row.size and list(row.shape) != shape:
        return row.reshape(shape)
    return row


def run(args) -> dict:
    result: dict = {
        "ok": False,
        "artifact": os.path.basename(args.artifact),
        "threads": args.threads,
        "platform": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    stage = "import"
    try:
        signature = json.load(open(args.signature)) if args.signature else None
        with np.load(args.inputs, allow_pickle=False) as z:
            arrays = [z[f"input_{i}"] for i in range(sum(k.startswith("input_") for k in z.files))]
        n = int(arrays[0].shape[0])
        t0 = time.perf_counter()
        runner_cls = _load_runner_class(args.artifact)
        result["import_ms"] = (time.perf_counter() - t0) * 1000
        rss_before = _peak_rss_mb()
        stage = "load"
        t0 = time.perf_counter()
        runner = runner_cls(args.artifact, signature=signature, threads=args.threads)
        result["init_ms"] = (time.perf_counter() - t0) * 1000
        result["runtime"] = runner.runtime
        result["delegate"] = runner.delegate
        stage = "run"
        samples = [[_sample(a, i, spec) for a, spec in zip(arrays, runner.inputs)] for i in range(n)]
        t0 = time.perf_counter()
        first = runner.run(samples[0])
        result["first_ms"] = (time.perf_counter() - t0) * 1000
        outputs = [[o] for o in first]
        for s in samples[1:]:
            for acc, o in zip(outputs, runner.run(s)):
                acc.append(o)
        result["samples"] = n
        if args.runs > 0:
            result["latency"] = timing.measure(runner.run, samples, args.warmup, args.runs, args.max_seconds)
        result["peak_rss_mb"] = _peak_rss_mb()
        result["rss_before_load_mb"] = rss_before
        # What loading and running this artifact added on top of the interpreter and runtime import:
        # the figure that differs between artifacts (the peak alone is dominated by the imports).
        result["model_rss_mb"] = max(0.0, result["peak_rss_mb"] - rss_before)
        stage = "write"
        with open(args.out, "wb") as f:
            np.savez(f, **{f"output_{i}": np.concatenate(o) for i, o in enumerate(outputs)})
        result["ok"] = True
    except Exception as e:  # reported to the host as this artifact's failure
        result.update(stage=stage, error=f"{type(e).__name__}: {e}")
        if args.verbose:
            result["traceback"] = traceback.format_exc()
    return result


def inspect(args) -> dict:
    ext = os.path.splitext(args.artifact)[1]
    try:
        if ext not in RUNNERS:
            raise ValueError(f"unknown artifact type '{ext}' (expected .tflite, .pte or .onnx)")
        import importlib

        module = importlib.import_module(f"{__package__}.{RUNNERS[ext]}")
        return {"ok": True, "details": module.inspect_artifact(args.artifact)}
    except Exception as e:
        out = {"ok": False, "stage": "inspect", "error": f"{type(e).__name__}: {e}"}
        if args.verbose:
            out["traceback"] = traceback.format_exc()
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="agent", description="Run one artifact and report JSON.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("artifact")
    r.add_argument("--inputs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--signature")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--runs", type=int, default=50)
    r.add_argument("--max-seconds", type=float, default=30.0)
    r.add_argument("--verbose", action="store_true")
    i = sub.add_parser("inspect")
    i.add_argument("artifact")
    i.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    result = run(args) if args.cmd == "run" else inspect(args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
