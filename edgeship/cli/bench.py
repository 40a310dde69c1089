"""`edgeship bench ARTIFACT`: latency per thread count, warm-up and percentiles stated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeship.errors import InputError


def run_bench(artifact: Path, threads: str, warmup: int, runs: int, device_uri, json_path, verbose) -> bool:
    """Prints one table per device (DEVICE_URI: one URI or several); returns True when any run failed.

    With several devices, one that cannot be reached is reported and the others still run; a
    DeviceError naming the unreachable ones is raised at the end (exit 3)."""
    from edgeship.console import err_console
    from rich.markup import escape
    from edgeship.errors import DeviceError
    from edgeship.report import write_json

    uris = [device_uri] if isinstance(device_uri, str) else list(dict.fromkeys(device_uri)) or ["local"]
    if len(uris) == 1:
        failed, results, context = _bench_one(artifact, threads, warmup, runs, uris[0], verbose)
        if json_path:
            write_json(json_path, results, context)
        return failed
    failed, all_results, contexts, unreachable = False, [], [], []
    for uri in uris:
        try:
            f, results, context = _bench_one(artifact, threads, warmup, runs, uri, verbose)
        except DeviceError as e:
            err_console().print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
            unreachable.append(uri)
            continue
        failed |= f
        all_results += results
        contexts.append(context)
    if json_path:
        write_json(json_path, all_results, {"device": ", ".join(uris), "devices": contexts, "warmup": warmup,
                                            "runs": runs, "emulated": any(c["emulated"] for c in contexts),
                                            "unreachable": unreachable})
    if unreachable:
        raise DeviceError(f"could not bench on {', '.join(unreachable)} (the other devices' tables are above)")
    return failed


def _bench_one(artifact: Path, threads: str, warmup: int, runs: int, device_uri: str, verbose):
    """(failed, results, context) for one device, after printing its table."""
    from rich.markup import escape
    from rich.table import Table

    from edgeship.console import console
    from edgeship.report import _f
    from edgeship.runtime.device import open_device
    from edgeship.validate import resolve

    try:
        thread_counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--threads '{threads}' is not a list of integers", hint="e.g. --threads 1,2,4") from None
    bundle, records, paths = resolve(artifact)
    if len(paths) != 1:
        raise InputError("bench takes one artifact", hint="pass a .tflite, .pte or .onnx file; validate takes bundles")
    record, path = records[0], paths[0]
    if bundle is not None:
        inputs = [a[:1] for a in bundle.golden().inputs]
    else:
        from edgeship.inspect import inspect_file

        inputs = [np.random.default_rng(0).standard_normal(t["shape"]).astype(np.float32)
                  for t in inspect_file(path)["inputs"]]
    device = open_device(device_uri)
    emulated = " (emulated)" if device.emulated else ""
    table = Table(title=f"{path.name} on {device.uri}{emulated}: {warmup} warm-up, {runs} runs", title_justify="left")
    for col in ("threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "init ms", "first ms", "peak MB", "runtime"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    results, failed = [], False
    for n in thread_counts:
        run = device.run_artifact(path, inputs, record.get("io"), threads=n, warmup=warmup, runs=runs,
                                  verbose=verbose)
        r = run.result
        results.append({"artifact": path.name, "device": device.uri, "emulated": device.emulated, "threads": n,
                        "ok": run.ok, "error": run.error,
                        **{k: r.get(k) for k in ("latency", "init_ms", "first_ms", "peak_rss_mb", "runtime",
                                                 "delegate")}})
        if not run.ok:
            failed = True
            table.add_row(str(n), *["—"] * 7, f"[red]{escape(str(run.error))}[/]")
            continue
        lat = r["latency"]
        # native runners (adb) report no peak memory, and not always an init or first-run time
        table.add_row(str(n), *(f"{lat[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
                      _f(r.get("init_ms"), "{:.0f}"), _f(r.get("first_ms"), "{:.2f}"),
                      _f(r.get("peak_rss_mb"), "{:.0f}"), escape(str(r.get("runtime"))))
    console().print(table)
    return failed, results, {"device": device.uri, "emulated": device.emulated, "warmup": warmup, "runs": runs}
