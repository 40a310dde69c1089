"""The native .pte runner against ExecuTorch's Python runtime and the .tflite of the same model,
and its timed loop against a bare C++ loop, in one run; with --litert, the native LiteRT runner
against ai-edge-litert's Python interpreter on the host and on emu:rpi4 instead.

    .venv/bin/python bench/native_runner.py [--repeats 5] [--mobilenet] [--out bench/NATIVE.md]
    .venv/bin/python bench/native_runner.py --litert [--repeats 3] [--emu-repeats 2]
    .venv/bin/python bench/native_runner.py --memory BUNDLE [--samples 100] [--baseline DIR] [--repeats 3]

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

--memory BUNDLE: the peak RSS (VmHWM) of both native runners on the bundle's fp32 and int8 .pte
and .tflite as validate runs them, beside the Python LiteRT interpreter and, with --baseline, an
earlier build of the runners (outputs compared bit for bit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeship.bundle import read_bundle  # noqa: E402
from edgeship.runtime import native_build  # noqa: E402
from edgeship.runtime.local import LocalDevice  # noqa: E402

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
    lines = [f"### {label}: native runner loop vs bare C++ loop, host ({runs} timed runs over {n} samples, "
             f"50 warm-up, {repeats} interleaved repeats, medians of p50)", "",
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


def bench_litert(bundle_dir: Path, label: str, repeats: int, emu_repeats: int) -> list[str]:
    from edgeship.runtime.emulated import EmulatedDevice

    bundle = read_bundle(bundle_dir)
    x = [a[:1] for a in bundle.golden().inputs]
    lines = []
    for uri, n in (("local", repeats), ("emu:rpi4", emu_repeats)):
        got: dict = {}
        for _ in range(n):
            for recipe in ("fp32", "int8"):
                rec = next(a for a in bundle.artifacts if a["format"] == "tflite" and a["recipe"] == recipe)
                path = bundle.artifact_path(rec)
                for runtime in ("python", "native"):  # interleaved
                    d = LocalDevice() if uri == "local" else EmulatedDevice(uri)
                    d.tflite_runtime = runtime
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
        title = (f"### {label}: native LiteRT runner vs Python interpreter, {uri}{emulated} ({n} interleaved "
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loop-runs", type=int, default=2000)
    p.add_argument("--mobilenet", action="store_true", help="also torch MobileNetV2 (random weights, 224x224)")
    p.add_argument("--out", type=Path)
    p.add_argument("--litert", action="store_true", help="only the native LiteRT runner against the Python one, "
                   "on the host and emu:rpi4")
    p.add_argument("--emu-repeats", type=int, default=2)
    p.add_argument("--bundle", type=Path, help="--litert: an exported bundle of the digits CNN with fp32 and int8 "
                   ".tflite (skips the export)")
    p.add_argument("--memory", type=Path, metavar="BUNDLE", help="only peak memory of the native runners on BUNDLE "
                   "(fp32 and int8, .pte and .tflite)")
    p.add_argument("--samples", type=int, default=100, help="--memory: samples per run (validate's golden count)")
    p.add_argument("--baseline", type=Path, help="--memory: a folder with an earlier build's pte_runner and "
                   "litert_runner, measured beside the current ones")
    args = p.parse_args()
    if args.memory:
        lines = bench_memory(args.memory, args.samples, args.repeats, args.baseline)
        print("\n".join(lines))
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
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
