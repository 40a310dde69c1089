"""The native .pte runner against ExecuTorch's Python runtime and the .tflite of the same model,
and its timed loop against a bare C++ loop, in one run; with --litert, the native LiteRT runner
against ai-edge-litert's Python interpreter on the host and on emu:rpi4 instead; with --onnx, the
native ONNX Runtime runner against Python's onnxruntime the same way.

    .venv/bin/python bench/native_runner.py [--repeats 5] [--mobilenet] [--out bench/NATIVE.md]
    .venv/bin/python bench/native_runner.py --litert [--repeats 3] [--emu-repeats 2]
    .venv/bin/python bench/native_runner.py --onnx [--bundle BUNDLE] [--repeats 3] [--emu-repeats 2]
    .venv/bin/python bench/native_runner.py --memory BUNDLE [--samples 100] [--baseline DIR] [--repeats 3]
    .venv/bin/python bench/native_runner.py --harness [--runs 100] [--warmup 5] [--repeats 3] [--bundle BUNDLE]

1. start: each artifact through edgeship's device path on the host (LocalDevice.run_artifact: a
   child process, one sample, no timed runs), medians over --repeats interleaved runs of
   - first result: wall time from starting the child to having its outputs back in edgeship,
   - init: the runtime's load (native: Module + load_method; Python: program + method load;
     LiteRT: interpreter + allocate),
   - peak: the child's VmHWM.
   .pte native, .pte Python runtime, .tflite (ai-edge-litert), for fp32 and int8.
2. loop: the native runner's timed loop (p50 over --loop-runs runs cycling through the samples)
   against bench/native_bare.cpp, the Module API's forward() over the same samples, built with the
   same compiler and libraries; runs interleaved, medians of the p50s.
Targets (not asserted): init <= 50 ms, peak <= 1.2x the .tflite's, first result <= 1.3x the
.tflite's, loop overhead <= 10%. The .tflite baseline here is ai-edge-litert's Python interpreter
(--tflite-runtime python), as when these tables were first taken.

--litert: the digits CNN's fp32 and int8 .tflite, each through LocalDevice / EmulatedDevice with
the native runner and with the Python interpreter, interleaved: first result (wall time of a run
with no timed runs, what validate pays before its first number), then a run with 10 warm-up and
100 timed runs giving init, first, p50 and peak. Medians over --repeats (host) and --emu-repeats
(emu:rpi4, QEMU user mode: the emulator's times, not a Pi's).

--onnx: the same for the digits CNN's fp32 and int8 .onnx, native ONNX Runtime runner against the
Python onnxruntime (EDGESHIP_ONNX_RUNTIME=native|python, the device's onnx_runtime); emu:rpi4's
Python side must be installed for its Python rows (`edgeship devices setup emu:rpi4 --with-python`).

--memory BUNDLE: the peak RSS (VmHWM) of both native runners on the bundle's fp32 and int8 .pte
and .tflite as validate runs them, beside the Python LiteRT interpreter and, with --baseline, an
earlier build of the runners (outputs compared bit for bit).

--harness: the whole command a user runs, `edgeship validate ARTIFACT.pte --runs N --warmup W
--threads 1 --json F` as a child process, against the bare C++ loop (native_bare.cpp, its
threadpool set to 1 thread) doing the same forwards on the same .pte and inputs (the G golden
samples once, W warm-up, N timed: G + W untimed, N timed), its process start and model load
included; wall and CPU time (RUSAGE_CHILDREN) of each, interleaved A B A B over --repeats. Then
where validate's extra time goes, each part timed on its own in the same repeats: Python start +
the imports validate makes (a child that only imports them), the bundle and golden read, the
sha256 check, the child runner as validate calls it (LocalDevice.run_artifact: inputs written,
runner process, outputs read back) and the golden comparison (metrics.compare); the rest is the
table, the JSON and what is not timed apart. Without --bundle: the zoo's ImageNet MobileNetV2
(bench/export_time.py:mobilenet_v2_224) at 384x384 (mobilenet_v2_384 here: about 20 ms a run on
one core of this x86 host; --size 224: about 7 ms) exported with the CLI to .pte fp32 (--int8: and
int8), 20 golden samples of bench/models/photos.py's crops at that size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeship.bundle import read_bundle
from edgeship.runtime import native_build
from edgeship.runtime.local import LocalDevice

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="true")


def export(source: str, out: Path, calib: str, name: str) -> Path:
    cmd = [sys.executable, "-m", "edgeship", "-q", "export", source, "--to", "pte,tflite", "--quant", "fp32,int8",
           "--calib", calib, "--golden-samples", "100", "--out", str(out), "--name", name]
    subprocess.run(cmd, check=True, env=ENV, capture_output=True)
    return out


def device(runtime: str, fmt: str = "pte") -> LocalDevice:
    d = LocalDevice()
    d.pte_runtime = runtime
    if fmt == "tflite":  # the .tflite baseline of these tables: ai-edge-litert's Python interpreter
        d.tflite_runtime = "python"
    return d


def bench_start(bundle_dir: Path, label: str, repeats: int) -> list[str]:
    bundle = read_bundle(bundle_dir)
    x = [a[:1] for a in bundle.golden().inputs]
    cases = []
    for recipe in ("fp32", "int8"):
        for fmt, runtime in (("pte", "native"), ("pte", "python"), ("tflite", "native")):
            rec = next(a for a in bundle.artifacts if a["format"] == fmt and a["recipe"] == recipe)
            cases.append((recipe, fmt, runtime, bundle.artifact_path(rec), rec["io"]))
    got = {c[:3]: {"first": [], "init": [], "peak": [], "runtime": None} for c in cases}
    for _ in range(repeats):
        for recipe, fmt, runtime, path, io in cases:  # interleaved
            t0 = time.perf_counter()
            run = device(runtime, fmt).run_artifact(path, x, io, warmup=0, runs=0)
            wall = (time.perf_counter() - t0) * 1000
            if not run.ok:
                raise SystemExit(f"{path.name} ({runtime}): {run.error}")
            g = got[(recipe, fmt, runtime)]
            g["first"].append(wall)
            g["init"].append(run.result["init_ms"])
            g["peak"].append(run.result["peak_rss_mb"])
            g["runtime"] = run.result["runtime"]
    med = {k: {m: statistics.median(v[m]) for m in ("first", "init", "peak")} | {"runtime": v["runtime"]}
           for k, v in got.items()}
    lines = [f"### {label}: start-up, host ({repeats} interleaved runs, medians)", "",
             "| recipe | artifact | runtime | first result ms | init ms | peak MB | first vs .tflite | peak vs .tflite |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for recipe, fmt, runtime in got:
        m, t = med[(recipe, fmt, runtime)], med[(recipe, "tflite", "native")]
        lines.append(f"| {recipe} | .{fmt} | {m['runtime']} | {m['first']:.1f} | {m['init']:.2f} | {m['peak']:.1f} | "
                     f"{m['first'] / t['first']:.2f}x | {m['peak'] / t['peak']:.2f}x |")
    return lines + [""]


def build_bare(tmp: Path) -> Path:
    runner = native_build.ensure_runner("host")
    et = runner.lib_dir.parent
    out = tmp / "native_bare"
    cmd = native_build.compile_command(native_build.compiler("host"), REPO / "bench" / "native_bare.cpp", out, et,
                                       str(et / "lib"), runner.version)
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def bench_loop(bundle_dir: Path, label: str, repeats: int, runs: int, tmp: Path) -> list[str]:
    bundle = read_bundle(bundle_dir)
    bare = build_bare(tmp)
    x = bundle.golden().inputs[0].astype(np.float32)
    n = len(x)
    x.tofile(tmp / "samples.bin")
    lines = [(f"### {label}: native runner loop vs bare C++ loop, host ({runs} timed runs over {n} samples, "
             f"50 warm-up, {repeats} interleaved repeats, medians of p50)"), "",
             "| recipe | bare forward() p50 ms | native runner p50 ms | overhead | bare mean-run ms | runner mean ms |",
             "| --- | --- | --- | --- | --- | --- |"]
    for recipe in ("fp32", "int8"):
        rec = next(a for a in bundle.artifacts if a["format"] == "pte" and a["recipe"] == recipe)
        path = bundle.artifact_path(rec)
        b50, bmean, r50, rmean = [], [], [], []
        for _ in range(repeats):
            out = subprocess.run([str(bare), str(path), str(tmp / "samples.bin"), str(n), "50", str(runs)],
                                 capture_output=True, text=True, check=True).stdout.split()
            b50.append(float(out[0]))
            bmean.append(float(out[1]) / runs)
            run = device("native").run_artifact(path, [x], rec["io"], warmup=50, runs=runs)
            r50.append(run.result["latency"]["p50_ms"])
            rmean.append(run.result["latency"]["mean_ms"])
        b, r = statistics.median(b50), statistics.median(r50)
        lines.append(f"| {recipe} | {b:.5f} | {r:.5f} | {(r / b - 1) * 100:+.1f}% | {statistics.median(bmean):.5f} | "
                     f"{statistics.median(rmean):.5f} |")
    return lines + [""]


def bench_litert(bundle_dir: Path, label: str, repeats: int, emu_repeats: int, fmt: str = "tflite") -> list[str]:
    """FMT 'tflite': the native LiteRT runner against ai-edge-litert's interpreter; 'onnx': the native
    ONNX Runtime runner against Python's onnxruntime."""
    from edgeship.runtime.emulated import EmulatedDevice

    attr, name, python = (("tflite_runtime", "LiteRT", "Python interpreter") if fmt == "tflite" else
                          ("onnx_runtime", "ONNX Runtime", "Python onnxruntime"))
    bundle = read_bundle(bundle_dir)
    x = [a[:1] for a in bundle.golden().inputs]
    lines = []
    for uri, n in (("local", repeats), ("emu:rpi4", emu_repeats)):
        if n < 1:
            continue
        got: dict = {}
        for _ in range(n):
            for recipe in ("fp32", "int8"):
                rec = next(a for a in bundle.artifacts if a["format"] == fmt and a["recipe"] == recipe)
                path = bundle.artifact_path(rec)
                for runtime in ("python", "native"):  # interleaved
                    d = LocalDevice() if uri == "local" else EmulatedDevice(uri)
                    setattr(d, attr, runtime)
                    t0 = time.perf_counter()
                    first = d.run_artifact(path, x, rec["io"], warmup=0, runs=0)
                    wall = (time.perf_counter() - t0) * 1000
                    run = d.run_artifact(path, x, rec["io"], warmup=10, runs=100)
                    if not (first.ok and run.ok):
                        raise SystemExit(f"{path.name} on {uri} ({runtime}): {first.error or run.error}")
                    g = got.setdefault((recipe, runtime), {"wall": [], "init": [], "first": [], "p50": [], "peak": []})
                    g["wall"].append(wall)
                    g["init"].append(run.result["init_ms"])
                    g["first"].append(run.result["first_ms"])
                    g["p50"].append(run.result["latency"]["p50_ms"])
                    g["peak"].append(run.result["peak_rss_mb"])
                    g["runtime"] = run.result["runtime"]
        emulated = " (QEMU user mode, -cpu cortex-a72: the emulator's times)" if uri != "local" else ""
        title = (f"### {label}: native {name} runner vs {python}, {uri}{emulated} ({n} interleaved "
                 f"repeats, medians; 10 warm-up, 100 timed runs, 1 thread)")
        header = ("| recipe | runtime | first result ms | init ms | first run ms | p50 ms | peak MB | "
                  "first result vs Python | peak vs Python |")
        lines += [title, "", header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for recipe in ("fp32", "int8"):
            base = {k: statistics.median(v) for k, v in got[(recipe, "python")].items() if k != "runtime"}
            for runtime in ("python", "native"):
                g = got[(recipe, runtime)]
                m = {k: statistics.median(v) for k, v in g.items() if k != "runtime"}
                lines.append(f"| {recipe} | {g['runtime']} | {m['wall']:.1f} | {m['init']:.2f} | {m['first']:.3f} | "
                             f"{m['p50']:.4f} | {m['peak']:.1f} | {m['wall'] / base['wall']:.2f}x | "
                             f"{m['peak'] / base['peak']:.2f}x |")
        lines.append("")
    return lines


def bench_memory(bundle_dir: Path, samples: int, repeats: int, baseline: Path | None) -> list[str]:
    """Peak RSS of the native runners on a bundle's fp32 and int8 .pte and .tflite, as validate runs
    them (the golden inputs, repeated to SAMPLES; 5 warm-up and 50 timed runs), with the Python
    LiteRT interpreter for reference and, from BASELINE (a folder with an earlier build's pte_runner
    and litert_runner), the same runners before a change: outputs compared bit for bit."""
    from edgeship.runtime import native

    bundle = read_bundle(bundle_dir)
    x = [np.concatenate([a] * -(-samples // len(a)))[:samples] for a in bundle.golden().inputs]
    got: dict = {}
    for _ in range(repeats):
        for recipe in ("fp32", "int8"):
            for fmt in ("pte", "tflite"):
                rec = next(a for a in bundle.artifacts if a["format"] == fmt and a["recipe"] == recipe)
                path = bundle.artifact_path(rec)
                kinds = ["native"] + (["baseline"] if baseline else []) + (["python"] if fmt == "tflite" else [])
                for kind in kinds:  # interleaved
                    if kind == "baseline":
                        binary = baseline / ("pte_runner" if fmt == "pte" else "litert_runner")
                        with tempfile.TemporaryDirectory(prefix="edgeship-bench-mem-") as tmp:
                            run = native.run_native([str(binary)], path, x, rec["io"], Path(tmp), warmup=5, runs=50)
                    else:
                        d = LocalDevice()
                        d.tflite_runtime = kind if fmt == "tflite" else None
                        run = d.run_artifact(path, x, rec["io"], warmup=5, runs=50)
                    if not run.ok:
                        raise SystemExit(f"{path.name} ({kind}): {run.error}")
                    g = got.setdefault((recipe, fmt, kind), {"peak": [], "model": [], "outputs": None})
                    g["peak"].append(run.result["peak_rss_mb"])
                    g["model"].append(run.result.get("model_rss_mb") or 0.0)
                    g["runtime"] = run.result["runtime"] + (" (baseline build)" if kind == "baseline" else "")
                    g["outputs"] = [np.asarray(o).tobytes() for o in run.outputs]
    title = (f"### {bundle_dir.name}: peak memory, host ({samples} samples, 5 warm-up, 50 timed runs; {repeats} "
             "interleaved repeats, medians)")
    header = ("| recipe | artifact | runtime | peak MB | model MB (peak - before load) | peak vs native .tflite | "
              "outputs as the native runner's |")
    lines = [title, "", header, "| --- | --- | --- | --- | --- | --- | --- |"]
    for (recipe, fmt, kind), g in got.items():
        peak, model = statistics.median(g["peak"]), statistics.median(g["model"])
        ref = statistics.median(got[(recipe, "tflite", "native")]["peak"])
        same = ("-" if kind == "native" else "bit-identical" if g["outputs"] == got[(recipe, fmt, "native")]["outputs"]
                else "differ")
        lines.append(f"| {recipe} | .{fmt} | {g['runtime']} | {peak:.1f} | {model:.1f} | {peak / ref:.2f}x | {same} |")
    return lines + [""]


# native_bare.cpp with ExecuTorch's threadpool set to one thread before main (as the runner's
# --threads 1 does): left alone, the bare loop would run XNNPACK on every core.
BARE_ONE_THREAD = """\
#include <cstdio>
#include "%h"
static const int bare_threads = [] {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool && pool->get_thread_count() != 1) pool->_unsafe_reset_threadpool(1);
  std::fprintf(stderr, "threads %zu\\n", pool ? pool->get_thread_count() : size_t{0});
  return 0;
}();
#include "%s"
"""

# what `edgeship validate` imports before it runs anything (the CLI, the engine, the tables, the runtimes)
VALIDATE_IMPORTS = ("import edgeship.cli.main, edgeship.cli.validate, edgeship.cli.each_device, edgeship.validation, "
                    "edgeship.reports.tables, edgeship.runtime.local, edgeship.runtime.native, sys; "
                    "print(len(sys.modules), *[m for m in ('torch', 'tensorflow', 'executorch') if m in sys.modules])")


def build_bare_one_thread(tmp: Path) -> Path:
    runner = native_build.ensure_runner("host")
    et = runner.lib_dir.parent
    src = tmp / "native_bare_1t.cpp"
    src.write_text(BARE_ONE_THREAD.replace("%s", str(REPO / "bench" / "native_bare.cpp"))
                   .replace("%h", str(REPO / "runtime" / "native" / "et_threadpool.h")))
    out = tmp / "native_bare_1t"
    cmd = native_build.compile_command(native_build.compiler("host"), src, out, et, str(et / "lib"), runner.version)
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def timed_child(cmd: list[str], env: dict | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child and every child it waited for, the finished process)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), proc


def _bench_module(name: str):
    import importlib.util

    module = "native_runner_" + name.replace("/", "_")
    spec = importlib.util.spec_from_file_location(module, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # export_time.py's dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def mobilenet_v2_384():
    """edgeship source: bench/export_time.py's mobilenet_v2_224 (the zoo's ImageNet MobileNetV2,
    fully convolutional up to a global mean) with a 384x384 input: about 20 ms a run on one core
    of this x86 host, where 224x224 takes about 7 ms."""
    import torch

    model, _ = _bench_module("export_time").mobilenet_v2_224()
    return model, (torch.zeros(1, 3, 384, 384),)


def photos_384():
    """edgeship data: bench/models/photos.py's calibration crops at 384x384 (32 of them)."""
    yield from _bench_module("models/photos").crops(32, 0, "calib", size=384)


def export_mobilenet(out: Path, int8: bool, size: int) -> Path:
    source, calib = (("bench/export_time.py:mobilenet_v2_224", "bench/models/photos.py:calib") if size == 224 else
                     ("bench/native_runner.py:mobilenet_v2_384", "bench/native_runner.py:photos_384"))
    cmd = [sys.executable, "-m", "edgeship", "-q", "export", source, "--to", "pte",
           "--quant", "fp32,int8" if int8 else "fp32", "--calib", calib,
           "--golden-samples", "20", "--out", str(out), "--name", f"mnv2_{size}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=ENV, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"export failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"exported {out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def bench_harness(bundle_dir: Path, repeats: int, runs: int, warmup: int, tmp: Path) -> list[str]:
    from edgeship.metrics import compare
    from edgeship.validation import _integrity_check

    edgeship = Path(sys.executable).parent / "edgeship"
    bundle = read_bundle(bundle_dir)
    golden = bundle.golden()
    x = golden.inputs[0].astype(np.float32)
    n = len(x)
    x.tofile(tmp / "samples.bin")
    bare = build_bare_one_thread(tmp)
    records = [r for r in bundle.artifacts if r["format"] == "pte"]
    keys = ("a_wall", "a_cpu", "b_wall", "b_cpu", "a_p50", "b_p50", "imp_wall", "imp_cpu", "read", "sha", "run_wall",
            "run_cpu", "init", "first", "timed", "cmp", "a_init", "a_first")
    got = {r["recipe"]: {k: [] for k in keys} for r in records}
    seen: dict = {}
    for rep in range(repeats):
        for rec in records:  # interleaved: A, B, then the parts, per artifact per repeat
            g, path = got[rec["recipe"]], bundle.artifact_path(rec)
            js = tmp / "validate.json"
            cmd = [str(edgeship), "validate", str(path), "--runs", str(runs), "--warmup", str(warmup), "--threads", "1",
                   "--json", str(js)]
            wall, cpu, proc = timed_child(cmd)
            if proc.returncode not in (0, 1) or not js.exists():
                raise SystemExit(f"validate failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            art = json.loads(js.read_text())["artifacts"][0]
            js.unlink()
            g["a_wall"].append(wall)
            g["a_cpu"].append(cpu)
            g["a_p50"].append(art["latency"]["p50_ms"])
            g["a_init"].append(art["init_ms"])
            g["a_first"].append(art["first_ms"])
            seen[rec["recipe"]] = {"status": art["status"], "runtime": art["runtime"], "threads": art["threads"],
                                   "runs": art["latency"]["runs"], "cmd": " ".join(cmd[1:-2])}

            wall, cpu, proc = timed_child([str(bare), str(path), str(tmp / "samples.bin"), str(n), str(n + warmup),
                                           str(runs)])
            if proc.returncode:
                raise SystemExit(f"bare loop failed ({proc.returncode}): {proc.stderr}")
            g["b_wall"].append(wall)
            g["b_cpu"].append(cpu)
            g["b_p50"].append(float(proc.stdout.split()[0]))
            threads = re.search(r"^threads (\d+)$", proc.stderr, re.MULTILINE)
            seen[rec["recipe"]]["bare_threads"] = threads.group(1) if threads else "?"

            # the parts of A, each on its own
            wall, cpu, proc = timed_child([sys.executable, "-c", VALIDATE_IMPORTS])
            g["imp_wall"].append(wall)
            g["imp_cpu"].append(cpu)
            seen["imports"] = proc.stdout.split()
            t0 = time.perf_counter()
            b2 = read_bundle(bundle_dir)
            gold = b2.golden()
            g["read"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _integrity_check(rec, path)
            g["sha"].append(time.perf_counter() - t0)
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            run = LocalDevice().run_artifact(path, gold.inputs, rec.get("io"), threads=1, warmup=warmup, runs=runs,
                                             timeout=600.0)
            g["run_wall"].append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            g["run_cpu"].append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
            if not run.ok:
                raise SystemExit(f"run_artifact: {run.error}")
            g["init"].append(run.result["init_ms"] / 1000)
            g["first"].append(run.result["first_ms"] / 1000)
            g["timed"].append(sum(run.result["latency"]["samples_ms"]) / 1000)
            names = [t["name"] for t in (rec.get("io") or {}).get("outputs", [])] or [
                f"output_{i}" for i in range(len(gold.outputs))]
            t0 = time.perf_counter()
            compare(gold.outputs, run.outputs, names, gold.labels)
            g["cmp"].append(time.perf_counter() - t0)
        print(f"repeat {rep + 1}/{repeats} done", file=sys.stderr, flush=True)

    med = {rc: {k: statistics.median(v) for k, v in g.items()} for rc, g in got.items()}
    size = "x".join(str(d) for d in x.shape[-2:])
    lines = [(f"### MobileNetV2 {size} (.pte, {bundle_dir.name}): `validate` against a bare loop, host "
             f"({n} golden samples, {warmup} warm-up, {runs} timed runs, 1 thread; {repeats} interleaved repeats, "
             "medians)"), "",
             ("| recipe | validate wall s | validate CPU s | bare loop wall s | bare loop CPU s | overhead s | "
             "overhead | validate p50 ms | bare p50 ms | p50 ratio |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rc, m in med.items():
        over = m["a_wall"] - m["b_wall"]
        lines.append(f"| {rc} | {m['a_wall']:.2f} | {m['a_cpu']:.2f} | {m['b_wall']:.2f} | {m['b_cpu']:.2f} | "
                     f"{over:+.2f} | {over / m['b_wall'] * 100:+.0f}% | {m['a_p50']:.2f} | {m['b_p50']:.2f} | "
                     f"{m['a_p50'] / m['b_p50']:.3f}x |")
    lines += ["", ("Where validate's wall time goes (each part timed on its own in the same repeats, medians; "
              "in-process parts run in an already-started Python):"), "",
              "| recipe | part | wall s | CPU s |", "| --- | --- | --- | --- |"]
    for rc, m in med.items():
        parts = [("Python start + validate's imports (a child that only imports)", m["imp_wall"], m["imp_cpu"]),
                 ("bundle + golden vectors read", m["read"], None),
                 ("sha256 integrity check", m["sha"], None),
                 ("child runner as validate calls it (inputs written, runner, outputs read)", m["run_wall"],
                  m["run_cpu"]),
                 ("- of which the runner's init (Module + load_method)", m["init"], None),
                 ("- of which its first run", m["first"], None),
                 (f"- of which its {runs} timed runs", m["timed"], None),
                 ("golden comparison (metrics.compare)", m["cmp"], None)]
        rest = m["a_wall"] - sum(p[1] for p in parts if not p[0].startswith("-"))
        parts.append(("rest (table, JSON, device open, not timed apart)", rest, None))
        parts.append(("bare loop, whole process (for reference)", m["b_wall"], m["b_cpu"]))
        for name, w, c in parts:
            lines.append(f"| {rc} | {name} | {w:.3f} | {'' if c is None else f'{c:.3f}'} |")
    lines.append("")
    for rc, s in seen.items():
        if rc == "imports":
            lines.append(f"- the import child: {s[0]} modules" + (f", imported {', '.join(s[1:])}" if s[1:] else
                                                                  ", no torch/tensorflow/executorch"))
        else:
            lines.append(f"- {rc}: `edgeship {s['cmd']} --json F`: status {s['status']}, runtime {s['runtime']}, "
                         f"{s['threads']} thread(s), {s['runs']} timed runs; bare loop threads: {s['bare_threads']}; "
                         f"validate's own init {med[rc]['a_init']:.1f} ms, first run {med[rc]['a_first']:.1f} ms")
    return lines + [""]


def emit_with_context(lines: list[str], cmd: str, start, load0, out: Path | None) -> None:
    """Print LINES under the command that made them and the load average at its start and now; also
    write them to OUT when given."""
    load1 = os.getloadavg()
    lines = [f"command: `{cmd}`", "",
             (f"started {start:%Y-%m-%d %H:%M} UTC; load average at start {load0[0]:.2f} / {load0[1]:.2f} / "
              f"{load0[2]:.2f}, at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} (1/5/15 min)"), ""] + lines
    print("\n".join(lines))
    if out:
        out.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loop-runs", type=int, default=2000)
    p.add_argument("--mobilenet", action="store_true", help="also torch MobileNetV2 (random weights, 224x224)")
    p.add_argument("--out", type=Path)
    p.add_argument("--litert", action="store_true", help="only the native LiteRT runner against the Python one, "
                   "on the host and emu:rpi4")
    p.add_argument("--onnx", action="store_true", help="only the native ONNX Runtime runner against Python's "
                   "onnxruntime, on the host and emu:rpi4 (--emu-repeats 0: the host only)")
    p.add_argument("--emu-repeats", type=int, default=2)
    p.add_argument("--bundle", type=Path, help="--litert: an exported bundle of the digits CNN with fp32 and int8 "
                   ".tflite; --harness: a bundle with .pte artifacts (skips the export)")
    p.add_argument("--harness", action="store_true", help="only the whole validate command against a bare loop on "
                   "MobileNetV2 224 .pte (the harness overhead)")
    p.add_argument("--runs", type=int, default=100, help="--harness: timed runs")
    p.add_argument("--warmup", type=int, default=5, help="--harness: warm-up runs (validate's default)")
    p.add_argument("--int8", action="store_true", help="--harness without --bundle: export int8 as well as fp32")
    p.add_argument("--size", type=int, choices=(224, 384), default=384, help="--harness without --bundle: "
                   "MobileNetV2's input size (384: about 20 ms a run on one core here; 224: about 7 ms)")
    p.add_argument("--memory", type=Path, metavar="BUNDLE", help="only peak memory of the native runners on BUNDLE "
                   "(fp32 and int8, .pte and .tflite)")
    p.add_argument("--samples", type=int, default=100, help="--memory: samples per run (validate's golden count)")
    p.add_argument("--baseline", type=Path, help="--memory: a folder with an earlier build's pte_runner and "
                   "litert_runner, measured beside the current ones")
    args = p.parse_args()
    if args.harness:
        load0, start = os.getloadavg(), datetime.datetime.now(datetime.timezone.utc)
        with tempfile.TemporaryDirectory(prefix="edgeship-bench-harness-") as tmp:
            bundle = args.bundle or export_mobilenet(Path(tmp) / f"mnv2_{args.size}", args.int8, args.size)
            lines = bench_harness(bundle, args.repeats, args.runs, args.warmup, Path(tmp))
        cmd = (f".venv/bin/python bench/native_runner.py --harness --runs {args.runs} --warmup {args.warmup} "
               f"--repeats {args.repeats}" + (" --bundle BUNDLE" if args.bundle else "")
               + (f" --size {args.size}" + (" --int8" if args.int8 else "") if not args.bundle else ""))
        emit_with_context(lines, cmd, start, load0, args.out)
        return
    if args.memory:
        lines = bench_memory(args.memory, args.samples, args.repeats, args.baseline)
        print("\n".join(lines))
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
        return
    if args.onnx:
        load0, start = os.getloadavg(), datetime.datetime.now(datetime.timezone.utc)
        with tempfile.TemporaryDirectory(prefix="edgeship-bench-onnx-") as tmp:
            bundle = args.bundle
            if bundle is None:
                bundle = Path(tmp) / "digits"
                subprocess.run([sys.executable, "-m", "edgeship", "-q", "export",
                                f"{REPO / 'examples' / 'torch_digits.py'}:build", "--to", "onnx", "--quant",
                                "fp32,int8", "--calib", "digits:train", "--golden-samples", "100", "--out", str(bundle), "--name",
                                "digits"], check=True, env=ENV, capture_output=True)
            lines = bench_litert(bundle, "digits CNN (torch, 8x8)", args.repeats, args.emu_repeats, fmt="onnx")
        cmd = (f".venv/bin/python bench/native_runner.py --onnx --repeats {args.repeats} --emu-repeats "
               f"{args.emu_repeats}" + (" --bundle BUNDLE" if args.bundle else ""))
        emit_with_context(lines, cmd, start, load0, args.out)
        return
    if args.litert and args.bundle:
        lines = bench_litert(args.bundle, "digits CNN (torch, 8x8)", args.repeats, args.emu_repeats)
        print("\n".join(lines))
        return
    if args.litert:
        with tempfile.TemporaryDirectory(prefix="edgeship-bench-litert-") as tmp:
            cmd = [sys.executable, "-m", "edgeship", "-q", "export", f"{REPO / 'examples' / 'torch_digits.py'}:build",
                   "--to", "tflite", "--quant", "fp32,int8", "--calib", "digits:train", "--golden-samples", "100",
                   "--out", str(Path(tmp) / "digits"), "--name", "digits"]
            subprocess.run(cmd, check=True, env=ENV, capture_output=True)
            lines = bench_litert(Path(tmp) / "digits", "digits CNN (torch, 8x8)", args.repeats, args.emu_repeats)
        print("\n".join(lines))
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
        return
    lines = [f"command: `.venv/bin/python bench/native_runner.py --repeats {args.repeats}"
             + (" --mobilenet" if args.mobilenet else "") + "`", ""]
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-native-") as tmp:
        tmp = Path(tmp)
        models = [("digits CNN (torch, 8x8)", export(f"{REPO / 'examples' / 'torch_digits.py'}:build", tmp / "digits",
                                                    "digits:train", "digits"))]
        if args.mobilenet:
            from bench import calibration_images  # bench/bench.py: 200 crops of scikit-learn's sample photos

            calib = calibration_images(200, "NCHW", tmp / "calib.npz")
            models.append(("MobileNetV2 (torch, 224x224, random weights)",
                           export(f"{REPO / 'bench' / 'mobilenet_v2_torch.py'}:build", tmp / "mnv2", str(calib),
                                  "mnv2")))
        for label, bundle in models:
            for part in (bench_start(bundle, label, args.repeats),
                         bench_loop(bundle, label, args.repeats, args.loop_runs, tmp)):
                print("\n".join(part), flush=True)
                lines += part
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
