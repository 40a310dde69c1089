"""`edgeship validate TARGET`: every artifact of a bundle (or one artifact) against the float reference."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeship.cli.each_device import device_options, validate_on_devices
from edgeship.context import runtime_choices


@click.command("validate")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--data", metavar="DATA", help="Re-run the source model over DATA instead of the golden vectors.")
@click.option("--threads", default=1, show_default=True, help="Runtime threads.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs before timing.")
@click.option("--runs", default=50, show_default=True, help="Timed runs (latency percentiles).")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds per artifact before it counts as hung.")
@click.option("--max-drop", type=float, help="Allowed top-1 drop vs the float model, points (default: per recipe).")
@click.option("--min-cosine", type=float, help="Minimum cosine similarity (default: per recipe).")
@click.option("--reference", type=click.Path(path_type=Path), metavar="B",
              help="Compare with artifact B (.tflite/.pte/.onnx, run on the same inputs) or bundle B's golden vectors.")
@click.option("--metric", metavar="NAME|module.py:fn", help="Task metric: top1, top5, map50, map50_95, miou[@T], "
              "psnr, cosine, or your own fn(outputs, labels) -> float (higher is better).")
@click.option("--metric-drop", type=float, help="Most the --metric may fall below the reference's.")
@click.option("--min-metric", type=float, help="The --metric's floor.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the results as JSON.")
@device_options
@click.pass_context
def command(ctx, target, data, threads, warmup, runs, timeout, max_drop, min_cosine, reference, metric, metric_drop,
            min_metric, json_path, device, runner, pte_runtime, tflite_runtime):
    """Compare every artifact of a bundle (or one artifact) with the float reference.

    Prints accuracy (top-1, agreement, cosine, SNR, max error), latency (p50/p90/p99 after
    warm-up), init time, size and peak memory. Exits 1 when an artifact fails a check or
    cannot be run, 3 when a device cannot be reached.
    """
    from edgeship.validation import ValidateRequest

    req = ValidateRequest(target, data, device[0], threads, warmup, runs, timeout, max_drop, min_cosine,
                          ctx.obj["verbose"], reference=reference, metric=metric, metric_drop=metric_drop,
                          min_metric=min_metric)
    # this command's only
    with runtime_choices(pte_runtime=pte_runtime, adb_runners=runner, tflite_runtime=tflite_runtime):
        code = validate_on_devices(req, list(device), json_path)
    if code:
        sys.exit(code)
