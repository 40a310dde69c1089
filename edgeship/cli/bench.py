"""`edgeship bench ARTIFACT`: latency per thread count, warm-up and percentiles stated; with --profile,
a .pte's or .tflite's time per op and per delegate call (runtime/native_profile.py measures it)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeship.cli.each_device import device_options, each_device, exit_code, merged_context, unique
from edgeship.console import console, escape, info
from edgeship.context import runtime_choices
from edgeship.errors import InputError


def run_bench(artifact: Path, threads: str, warmup: int, runs: int, device_uri, json_path, verbose) -> int:
    """Prints one table per device (DEVICE_URI: one URI or several); returns the exit code: 0, 1 when
    any run failed, 3 when a device could not be reached (each_device.py: the others still run)."""
    from edgeship.reports.tables import write_json

    uris = [device_uri] if isinstance(device_uri, str) else unique(device_uri)
    fan = each_device(uris, lambda uri: _bench_one(artifact, threads, warmup, runs, uri, verbose))
    if json_path:
        write_json(json_path, fan.results, merged_context(uris, fan, warmup=warmup, runs=runs))
    return exit_code(fan, lambda r: not r["ok"])


def _one_input(bundle, path: Path) -> list:
    """One sample: the bundle's first golden vector, or seeded noise of the artifact's input shapes."""
    import numpy as np

    from edgeship.inspect import inspect_file

    if bundle is not None:
        return [a[:1] for a in bundle.golden().inputs]
    rng, out = np.random.default_rng(0), []
    for i, t in enumerate(inspect_file(path)["inputs"]):
        shape = t["shape"]
        if any(not isinstance(d, int) or d < 0 for d in shape):  # an open (dynamic) dimension: no size to fill
            shown = "x".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape)
            raise InputError(f"{path.name}: input {t.get('name') or i} has an open dimension ({shown}), so bench "
                             "cannot make a sample for it",
                             hint="bench the artifact inside its bundle (its golden vectors set the shape), or "
                                  "export with a fixed shape (--input-shape NAME=1x...)")
        dtype = np.dtype(t.get("dtype") or "float32")
        # noise for float inputs; zeros for integer ones (token ids, quantized inputs): always in range
        out.append(rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype))
    return out


def _bench_one(artifact: Path, threads: str, warmup: int, runs: int, device_uri: str, verbose):
    """(results, context) for one device, after printing its table."""
    from rich.table import Table

    from edgeship.reports.tables import fmt
    from edgeship.runtime.device import open_device
    from edgeship.validation import resolve

    try:
        thread_counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--threads '{threads}' is not a list of integers", hint="e.g. --threads 1,2,4") from None
    bundle, records, paths = resolve(artifact)
    if len(paths) != 1:
        raise InputError("bench takes one artifact", hint="pass a .tflite, .pte or .onnx file; validate takes bundles")
    record, path = records[0], paths[0]
    inputs = _one_input(bundle, path)
    device = open_device(device_uri)
    emulated = " (emulated)" if device.emulated else ""
    table = Table(title=f"{path.name} on {device.uri}{emulated}: {warmup} warm-up, {runs} runs", title_justify="left")
    for col in ("threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "init ms", "first ms", "peak MB", "runtime"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    results = []
    for n in thread_counts:
        run = device.run_artifact(path, inputs, record.get("io"), threads=n, warmup=warmup, runs=runs,
                                  verbose=verbose)
        r = run.result
        results.append({"artifact": path.name, "device": device.uri, "emulated": device.emulated, "threads": n,
                        "ok": run.ok, "error": run.error,
                        **{k: r.get(k) for k in ("latency", "init_ms", "first_ms", "peak_rss_mb", "runtime",
                                                 "delegate")}})
        if not run.ok:
            table.add_row(str(n), *["—"] * 7, f"[red]{escape(str(run.error))}[/]")
            continue
        lat = r["latency"]
        # native runners (adb) report no peak memory, and not always an init or first-run time
        table.add_row(str(n), *(f"{lat[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
                      fmt(r.get("init_ms"), "{:.0f}"), fmt(r.get("first_ms"), "{:.2f}"),
                      fmt(r.get("peak_rss_mb"), "{:.0f}"), escape(str(r.get("runtime"))))
    console().print(table)
    return results, {"device": device.uri, "emulated": device.emulated, "warmup": warmup, "runs": runs}


def run_profile(artifact: Path, device_uris, warmup: int, runs: int, threads: str = "1") -> None:
    """bench --profile: the per-op table for each device (after bench's own tables)."""
    from edgeship.runtime import native_build
    from edgeship.runtime.device import open_device
    from edgeship.runtime.native_profile import TFLITE_UNAVAILABLE, profile
    from edgeship.validation import resolve

    bundle, records, paths = resolve(artifact)
    record, path = records[0], paths[0]
    if path.suffix == ".tflite" and native_build.tflite_runtime() != "native":
        info(TFLITE_UNAVAILABLE)
        return
    inputs = _one_input(bundle, path)
    n = int(str(threads).split(",")[0])
    for uri in device_uris:
        device = open_device(uri)
        print_profile(path, device.uri, profile(device, path, inputs, record.get("io"), warmup=warmup, runs=runs,
                                                threads=n))


def print_profile(path: Path, device_uri: str, report: dict, top: int = 30) -> None:
    from rich.table import Table

    emulated = " (emulated: not device timings)" if report["emulated"] else ""
    t = Table(title=f"{path.name} on {device_uri}{emulated}: time per op and delegate call, slowest first "
                    f"({escape(str(report['runtime']))}, {report.get('source', 'ETDump')})", title_justify="left")
    for col in ("event", "delegated", "calls", "p50 ms", "mean ms", "total ms"):
        t.add_column(col, justify="left" if col in ("event", "delegated") else "right")
    for r in report["rows"][:top]:
        t.add_row(escape(r["name"]), "yes" if r["delegated"] else "", str(r["count"]), f"{r['p50_ms']:.5f}",
                  f"{r['mean_ms']:.5f}", f"{r['total_ms']:.4f}")
    console().print(t)


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--threads", default="1", show_default=True, help="Thread counts to try, comma-separated.")
@click.option("--warmup", default=10, show_default=True, help="Untimed runs before timing.")
@click.option("--runs", default=100, show_default=True, help="Timed runs (latency percentiles).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the results as JSON.")
@click.option("--profile", is_flag=True, help="Time per op and per delegate call, slowest first: ETDump for .pte, "
              "LiteRT's profiler for .tflite (both through edgeship's native runners).")
@device_options
@click.pass_context
def command(ctx, artifact, threads, warmup, runs, json_path, profile, device, runner, pte_runtime, tflite_runtime):
    """Time one artifact: warm-up, then p50/p90/p99 latency per thread count.

    Exits 1 when a run failed, 3 when a device cannot be reached (the other devices still run)."""
    # this command's only
    with runtime_choices(pte_runtime=pte_runtime, adb_runners=runner, tflite_runtime=tflite_runtime):
        code = run_bench(artifact, threads, warmup, runs, device, json_path, ctx.obj["verbose"])
        if profile:
            run_profile(artifact, device, warmup, runs, threads)
    if code:
        sys.exit(code)
