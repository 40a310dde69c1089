"""Runtime-side benchmarks (issue 6), used by bench.py: each measured side by side in one run.

first:   time to the first result of `edgeship validate ARTIFACT` (one artifact of a bundle,
         golden vectors, no timed runs) against a bare script that imports the same runtime,
         loads the artifact and runs one input: the floor. For .pte also the floor through
         ExecuTorch's public `executorch.runtime` API, which costs several seconds of imports.
harness: validating 1,000 samples (whole command) against a bare script looping the runtime over
         the same samples (whole process), and the loops alone in one process: edgeship's Runner
         (signature checks, (de)quantization, output collection) against the bare interpreter.
memory:  peak RSS of an `edgeship export` process tree against the model's size.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BARE_TFLITE = """
import sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
z = np.load(sys.argv[2]); x = z["input_0"]; n = int(sys.argv[3])
it = Interpreter(model_path=sys.argv[1], num_threads=1); it.allocate_tensors()
i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
outs = []
for k in range(n):
    it.set_tensor(i, x[k : k + 1]); it.invoke(); outs.append(it.get_tensor(o).copy())
"""

BARE_PTE = """
import sys, numpy as np, torch
from executorch.extension.pybindings import _C
z = np.load(sys.argv[2]); x = z["input_0"]; n = int(sys.argv[3])
data = open(sys.argv[1], "rb").read()  # the runtime reads from this buffer: keep it alive
program = _C._load_program_from_buffer(data)
m = program.load_method("forward")
outs = [m.call([torch.from_numpy(x[k : k + 1].copy())])[0].numpy() for k in range(n)]
"""

BARE_PTE_PUBLIC = """
import sys, numpy as np, torch
from executorch.runtime import Runtime
z = np.load(sys.argv[2]); x = z["input_0"]; n = int(sys.argv[3])
program = Runtime.get().load_program(sys.argv[1])
m = program.load_method("forward")
outs = [m.execute([torch.from_numpy(x[k : k + 1].copy())])[0].numpy() for k in range(n)]
"""

# Runs a command and prints the peak RSS (KiB) of the largest process in its tree.
PEAK_RSS = """
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if p.returncode:
    sys.exit(p.stderr[-2000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _timed(cmd, env, cwd) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(map(str, cmd))}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def _interleaved(commands: dict, repeats: int, env, cwd) -> dict[str, float]:
    times = {k: [] for k in commands}
    for _ in range(repeats):
        for k, cmd in commands.items():
            times[k].append(_timed(cmd, env, cwd))
    return {k: statistics.median(v) for k, v in times.items()}


def digits_bundle(tmp: Path, edgeship: list[str], env, cwd, samples: int = 1000) -> Path:
    """The torch digits CNN in both formats, fp32 and int8, with `samples` golden vectors."""
    out = tmp / "digits"
    _timed(edgeship + ["-q", "export", str(cwd / "examples" / "torch_digits.py") + ":build", "--to", "tflite,pte",
                       "--quant", "fp32,int8", "--calib", "digits:train", "--eval", "digits",
                       "--golden-samples", str(samples), "--out", str(out), "--force", "--name", "digits"], env, cwd)
    return out


def bench_first(bundle: Path, py: str, edgeship: list[str], env, cwd, repeats: int) -> list[str]:
    golden = str(bundle / "golden.npz")
    rows = []
    for fmt, bare in (("tflite", BARE_TFLITE), ("pte", BARE_PTE)):
        art = str(bundle / f"digits.fp32.{fmt}")
        cmds = {
            "floor": [py, "-c", bare, art, golden, "1"],
            "edgeship": edgeship + ["-q", "validate", art, "--runs", "0", "--warmup", "0"],
        }
        if fmt == "pte":
            cmds["floor via executorch.runtime"] = [py, "-c", BARE_PTE_PUBLIC, art, golden, "1"]
        m = _interleaved(cmds, repeats, env, cwd)
        extra = (f" (public-API floor {m['floor via executorch.runtime']:.2f} s)" if fmt == "pte" else "")
        rows.append(f"| .{fmt} | {m['floor']:.2f} | {m['edgeship']:.2f} | {m['edgeship'] / m['floor']:.2f}x{extra} |")
    return ["## Time to the first result of validate (whole processes, median of %d)" % repeats, "",
            "| artifact | bare load + 1 run s | `edgeship validate` s | ratio |", "| --- | --- | --- | --- |",
            *rows, "", "(targets: .tflite under 1 s; .pte within 1.3x of its floor)", ""]


def _loop_seconds(fn, xs, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in xs:
            fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_harness(bundle: Path, py: str, edgeship: list[str], env, cwd, repeats: int) -> list[str]:
    import numpy as np

    from edgeship.runtime.standalone import executorch as et_runner
    from edgeship.runtime.standalone import tflite as tfl_runner

    with np.load(bundle / "golden.npz") as z:
        x = z["input_0"]
    n = len(x)
    golden = str(bundle / "golden.npz")
    rows = []
    for fmt, bare in (("tflite", BARE_TFLITE), ("pte", BARE_PTE)):
        for recipe in ("fp32", "int8"):
            art = bundle / f"digits.{recipe}.{fmt}"
            m = _interleaved({
                "bare": [py, "-c", bare, str(art), golden, str(n)],
                "edgeship": edgeship + ["-q", "validate", str(art), "--runs", "0", "--warmup", "0"],
            }, repeats, env, cwd)
            samples = [x[k : k + 1] for k in range(n)]
            if fmt == "tflite":
                runner = tfl_runner.Runner(str(art), threads=1)
                from ai_edge_litert.interpreter import Interpreter

                it = Interpreter(model_path=str(art), num_threads=1)
                it.allocate_tensors()
                i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

                def bare_call(s, it=it, i=i, o=o):
                    it.set_tensor(i, s)
                    it.invoke()
                    return it.get_tensor(o).copy()
            else:
                import torch
                from executorch.extension.pybindings import _C

                runner = et_runner.Runner(str(art), threads=1)
                data = art.read_bytes()
                program = _C._load_program_from_buffer(data)
                method = program.load_method("forward")

                def bare_call(s, method=method, keep=(data, program)):
                    return method.call([torch.from_numpy(s.copy())])[0].numpy()
            loop_bare = _loop_seconds(bare_call, samples, repeats)
            loop_edge = _loop_seconds(lambda s: runner.run([s]), samples, repeats)
            rows.append(f"| {art.name} | {m['bare']:.2f} | {m['edgeship']:.2f} | "
                        f"{(m['edgeship'] / m['bare'] - 1) * 100:+.0f}% | {loop_bare * 1e3:.1f} | "
                        f"{loop_edge * 1e3:.1f} | {(loop_edge / loop_bare - 1) * 100:+.0f}% |")
    return [f"## Harness overhead: {n} samples (median of {repeats})", "",
            "| artifact | bare process s | `edgeship validate` s | overhead | bare loop ms | edgeship Runner loop ms "
            "| loop overhead |", "| --- | --- | --- | --- | --- | --- | --- |",
            *rows, "", "(target: under 10%; the whole-command figure includes edgeship's start and the agent "
            "process, the loop figure is the per-sample harness alone)", ""]


def bench_memory(cases: list[tuple[str, list[str], float]], py: str, env, cwd) -> list[str]:
    """cases: (label, command, model size in MB)."""
    rows = []
    for label, cmd, model_mb in cases:
        p = subprocess.run([py, "-c", PEAK_RSS, *cmd], capture_output=True, text=True, env=env, cwd=cwd)
        if p.returncode:
            sys.exit(f"benchmark step failed: {label}\n{p.stderr[-2000:]}")
        peak_mb = int(p.stdout.strip().splitlines()[-1]) / 1024
        rows.append(f"| {label} | {model_mb:.2f} | {peak_mb:.0f} | {peak_mb / model_mb:.0f}x |")
    return ["## Peak memory of an export (largest process of the tree)", "",
            "| export | model fp32 MB | peak RSS MB | ratio |", "| --- | --- | --- | --- |", *rows,
            "", "(most of the peak is the frameworks themselves: torch, TensorFlow, the converters)", ""]
