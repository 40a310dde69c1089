"""The `edgeship` command line.

Exit codes: 0 ok; 1 a check failed (or a converter/runtime failed on the model); 2 bad usage or
bad input; 3 a device could not be reached; 130 interrupted. Frameworks are imported only by
the commands that need them, so `edgeship --help` stays fast.
"""

from __future__ import annotations

import contextlib
import difflib
import signal
import sys
from pathlib import Path

import click

from edgeship import __version__
from edgeship.errors import EXIT_CHECK_FAILED, EdgeshipError

EPILOG = """\b
Examples:
  edgeship demo
  edgeship export examples/torch_digits.py:build --to tflite,pte --quant fp32,int8 \\
      --calib digits:train --eval digits:test --out bundles/digits
  edgeship validate bundles/digits --json report.json
  edgeship inspect bundles/digits/torch_digits.int8.tflite
  edgeship bench bundles/digits/torch_digits.int8.pte --threads 1,2
\b
Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 device unreachable.
"""


class SuggestingGroup(click.Group):
    """`edgeship exprot` -> "No such command 'exprot'. Did you mean 'export'?"."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and name not in self.commands and not name.startswith("-"):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint} Commands: {', '.join(self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)


@contextlib.contextmanager
def handle_errors(verbose: bool):
    """Turn a user error into one red line with a hint and an exit code; keep tracebacks for bugs."""
    from edgeship.console import err_console
    from rich.markup import escape

    def on_term(signum, frame):  # a kill during export: unwind so staging folders are removed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except EdgeshipError as e:
        if verbose:
            err_console().print_exception()
        err_console().print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
        if e.hint:
            err_console().print(f"[dim]hint:[/] {escape(e.hint)}", soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console().print("[red]interrupted[/]: nothing was written")
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(cls=SuggestingGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeship")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and converter logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or step messages (CI logs).")
@click.pass_context
def cli(ctx, verbose, quiet):
    """Export PyTorch and Keras models to TFLite (LiteRT) and ExecuTorch, quantize them, and
    prove they still compute what the float model computes."""
    from edgeship import progress

    progress.set_quiet(quiet)
    ctx.obj = {"verbose": verbose}


def _input_shapes(values):
    from edgeship.sources import parse_input_shape

    return [parse_input_shape(v) for v in values]


def _floats(text: str | None):
    return tuple(float(x) for x in text.split(",")) if text else None


@cli.command(epilog="\b\nRoutes: torch -> tflite|pte|onnx, keras -> tflite|pte|onnx (SavedModel -> tflite|onnx).\n"
                    "Recipes: fp32, fp16, dynamic-int8, int8 (int8 needs --calib).")
@click.argument("source")
@click.option("--to", "targets", default="tflite,pte", show_default=True,
              help="Formats, comma-separated: tflite, pte, onnx.")
@click.option("--quant", "recipes", default="fp32,int8", show_default=True,
              help="Recipes, comma-separated: fp32, fp16, dynamic-int8, int8.")
@click.option("--calib", metavar="DATA", help="Calibration data: .npz, folder, image folder, module.py:fn, digits.")
@click.option("--eval", "eval_data", metavar="DATA", help="Data for the golden vectors (default: --calib's).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--trust-source", is_flag=True, help="Allow a .pt2 that stores pickled objects (runs their code).")
@click.option("--framework", type=click.Choice(["torch", "keras"]), help="Override detection from SOURCE.")
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME=1x3x224x224[:dtype]",
              help="Input spec where the model has none (repeatable).")
@click.option("--int8-io", is_flag=True, help="Integer inputs/outputs for the int8 recipe (default: float I/O).")
@click.option("--calib-samples", default=200, show_default=True, help="Calibration samples to use.")
@click.option("--calib-min", default=16, show_default=True, help="Fewer calibration samples than this is an error.")
@click.option("--golden-samples", default=100, show_default=True, help="Samples kept as golden vectors.")
@click.option("--name", help="Artifact base name (default: from SOURCE).")
@click.option("--image-size", metavar="HxW", help="Image folders: resize to HxW (default: the model's input).")
@click.option("--mean", metavar="M[,M,M]", help="Image folders: subtract per channel (after scaling to 0..1).")
@click.option("--std", metavar="S[,S,S]", help="Image folders: divide per channel.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), help="Image folders: layout of the model input.")
@click.option("--bgr", is_flag=True, help="Image folders: feed BGR instead of RGB.")
@click.option("--reference-device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the float reference (golden outputs) runs: cuda for PyTorch models on a GPU; "
                   "auto uses CUDA when present, else the CPU.")
@click.option("--max-drop", type=float, metavar="PCT",
              help="Accuracy-aware int8: keep the layers that hurt most in float until the drop on --eval is "
                   "at most PCT (see --metric); exit 1 with the best artifact when it cannot be met.")
@click.option("--metric", type=click.Choice(["top1", "cosine", "snr"]), default="top1", show_default=True,
              help="--max-drop's measure: top-1 points lost, (1-cosine)x100, or noise power as % of signal.")
@click.option("--calibration", type=click.Choice(["minmax", "percentile", "mse", "entropy", "auto"]),
              help="Activation ranges for int8, through each route's own quantizer (default: the route's: mse "
                   "for PT2E routes, minmax for onnxruntime and TFLiteConverter); auto measures each on --eval "
                   "(or a held-out half of --calib) and keeps the best. Recorded in the manifest with its score.")
@click.option("--cle", type=click.Choice(["off", "on", "auto"]), default="off", show_default=True,
              help="Cross-layer equalization of a PyTorch model's conv -> ReLU/ReLU6 -> conv pairs before int8 "
                   "(same float function); auto keeps it only where it raises the measured SNR.")
@click.pass_context
def export(ctx, source, targets, recipes, calib, eval_data, out, force, trust_source, framework, input_shape, int8_io,
           calib_samples, calib_min, golden_samples, name, image_size, mean, std, layout, bgr, reference_device,
           max_drop, metric, calibration, cle):
    """Export SOURCE to one artifact per (format, recipe), with manifest.json and golden.npz.

    SOURCE is file.py:factory or a .pt2 (PyTorch), a .keras/.h5 file or a SavedModel folder.
    """
    verbose = ctx.obj["verbose"]
    with handle_errors(verbose):
        from edgeship.console import console
        from edgeship.data import ImageOptions
        from edgeship.pipeline import ExportRequest, export as run_export, parse_targets
        from edgeship.report import export_table

        image = ImageOptions(
            size=tuple(int(v) for v in image_size.lower().split("x")) if image_size else None,
            mean=_floats(mean) or (0.0,), std=_floats(std) or (1.0,), layout=layout, bgr=bgr,
        )
        req = ExportRequest(
            source=source, out=out, targets=parse_targets(targets), recipes=recipes, calib=calib, eval=eval_data,
            calib_samples=calib_samples, calib_min=calib_min, golden_samples=golden_samples, framework=framework,
            input_shapes=_input_shapes(input_shape), image=image, int8_io=int8_io, force=force, trust_source=trust_source,
            name=name,
            verbose=verbose,
            reference_device=reference_device,
            max_drop=max_drop, metric=metric, calibration=calibration, cle=cle,
        )
        result = run_export(req)
        console().print(export_table(result.manifest))
        console().print(f"bundle: {result.bundle}")


def _adb_runner(devices, runner) -> None:
    """--runner is for adb devices, which need it; the adb device reads it from the environment."""
    from edgeship.errors import InputError

    adb = [d for d in devices if d == "adb" or d.startswith("adb:")]
    if adb and not runner:
        raise InputError(f"--device {adb[0]} needs --runner PATH: the native runner to push (LiteRT's "
                         "benchmark_model for .tflite, ExecuTorch's executor_runner for .pte)")
    if runner:
        from edgeship.runtime.adb import use_runners

        use_runners(runner)


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--data", metavar="DATA", help="Re-run the source model over DATA instead of the golden vectors.")
@click.option("--device", multiple=True, default=["local"], show_default=True,
              help="Where to run: local, emu:rpi4, emu:rpi5, ssh://user@host[:port], adb[:SERIAL]. Repeat to run on each.")
@click.option("--threads", default=1, show_default=True, help="Runtime threads.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs before timing.")
@click.option("--runs", default=50, show_default=True, help="Timed runs (latency percentiles).")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds per artifact before it counts as hung.")
@click.option("--max-drop", type=float, help="Allowed top-1 drop vs the float model, points (default: per recipe).")
@click.option("--min-cosine", type=float, help="Minimum cosine similarity (default: per recipe).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the results as JSON.")
@click.option("--runner", type=click.Path(path_type=Path), multiple=True, help="adb devices: the native runner "
              "to push: LiteRT's benchmark_model for .tflite, ExecuTorch's executor_runner for .pte (a name "
              "holding 'executor_runner' runs .pte). Repeat for both.")
@click.pass_context
def validate(ctx, target, data, device, threads, warmup, runs, timeout, max_drop, min_cosine, json_path, runner):
    """Compare every artifact of a bundle (or one artifact) with the float reference.

    Prints accuracy (top-1, agreement, cosine, SNR, max error), latency (p50/p90/p99 after
    warm-up), init time, size and peak memory. Exits 1 when an artifact fails a check or
    cannot be run.
    """
    with handle_errors(ctx.obj["verbose"]):
        _adb_runner(device, runner)
        from edgeship.fanout import validate_on_devices
        from edgeship.validate import ValidateRequest

        req = ValidateRequest(target, data, device[0], threads, warmup, runs, timeout, max_drop, min_cosine,
                              ctx.obj["verbose"])
        code = validate_on_devices(req, list(device), json_path)
        if code:
            sys.exit(code)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--threads", default="1", show_default=True, help="Thread counts to try, comma-separated.")
@click.option("--warmup", default=10, show_default=True)
@click.option("--runs", default=100, show_default=True)
@click.option("--device", multiple=True, default=["local"], show_default=True,
              help="Where to run: local, emu:rpi4, emu:rpi5, ssh://user@host[:port], adb[:SERIAL]. Repeat to run on each.")
@click.option("--json", "json_path", type=click.Path(path_type=Path))
@click.option("--runner", type=click.Path(path_type=Path), multiple=True, help="adb devices: the native runner "
              "to push: LiteRT's benchmark_model for .tflite, ExecuTorch's executor_runner for .pte (a name "
              "holding 'executor_runner' runs .pte). Repeat for both.")
@click.pass_context
def bench(ctx, artifact, threads, warmup, runs, device, json_path, runner):
    """Time one artifact: warm-up, then p50/p90/p99 latency per thread count."""
    with handle_errors(ctx.obj["verbose"]):
        _adb_runner(device, runner)
        from edgeship.bench_cmd import run_bench

        if run_bench(artifact, threads, warmup, runs, device, json_path, ctx.obj["verbose"]):
            sys.exit(EXIT_CHECK_FAILED)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def inspect(ctx, artifact, as_json):
    """Show an artifact's ops (delegated or not), tensors, quantization and size by part."""
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.inspect import inspect_file, print_inspect

        details = inspect_file(artifact)
        if as_json:
            import json

            click.echo(json.dumps(details, indent=2, default=str))
        else:
            print_inspect(artifact, details)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--data", metavar="DATA", help="Inputs to compare on (default: the bundle's golden vectors).")
@click.option("--source", help="The float model (default: the bundle's source).")
@click.option("--calib", metavar="DATA", help=".pte: the calibration data (default: the bundle's).")
@click.option("--samples", default=64, show_default=True, help="Samples to compare on.")
@click.option("--png", type=click.Path(path_type=Path), help="Bar chart to write (default: ARTIFACT-stem.diff.png here).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the per-layer numbers as JSON.")
@click.pass_context
def diff(ctx, artifact, data, source, calib, samples, png, json_path):
    """Per-layer error of an int8 artifact against the float model: SNR, cosine and max error of
    each layer's output, worst first (by SNR lost at the layer), and a bar chart PNG.

    .tflite from Keras: the int8 artifact's intermediate tensors vs the fp32 .tflite of the same
    route. .pte (from PyTorch or Keras) and .tflite from PyTorch: the route's int8 graph simulated
    on the host (PT2E q/dq graph vs the float graph): ExecuTorch exposes no intermediate tensors,
    and litert-torch renames them.
    """
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.diff_cmd import DiffRequest, run_diff

        run_diff(DiffRequest(artifact, data, source, calib, samples, png, json_path, ctx.obj["verbose"]))


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgeship-demo"), show_default=True)
@click.option("--to", "targets", default="tflite,pte", show_default=True)
@click.option("--quant", "recipes", default="fp32,int8", show_default=True)
@click.option("--framework", "frameworks", default="torch,keras", show_default=True)
@click.pass_context
def demo(ctx, out, targets, recipes, frameworks):
    """Train small CNNs on scikit-learn's digits in PyTorch and Keras, export both to both
    formats, validate everything on the host, and print the table. No files needed."""
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.demo import run_demo

        if not run_demo(out, targets, recipes, frameworks, ctx.obj["verbose"]):
            sys.exit(EXIT_CHECK_FAILED)


@cli.command()
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="A previous check's report.json to compare with.")
@click.option("--report-dir", type=click.Path(path_type=Path), help="Report folder (default: beside the bundle).")
@click.option("--skip-export", is_flag=True, help="Validate the bundles an earlier check wrote instead of exporting.")
@click.pass_context
def check(ctx, config, baseline, report_dir, skip_export):
    """Export every target of CONFIG (edgeship.toml or pyproject.toml; default: found from here),
    validate each on every device, evaluate the gates, write JSON, JUnit, Markdown and HTML reports.

    Exits 0 when every gate passes, 1 when a gate fails or could not be measured, 2 on a bad
    configuration, 3 when a device cannot be reached.
    """
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.check import CheckOptions, run_check

        outcome = run_check(CheckOptions(config, baseline, report_dir, skip_export, ctx.obj["verbose"]))
        if outcome.exit_code:
            sys.exit(outcome.exit_code)


@cli.group(cls=SuggestingGroup)
def devices():
    """Prepare and inspect devices: local, emu:rpi4, emu:rpi5, ssh://user@host[:port]."""


@devices.command("setup")
@click.argument("uri")
@click.option("--rebuild", is_flag=True, help="Rebuild even when a prepared runtime is cached.")
@click.option("--with-executorch", is_flag=True, help="ssh:// devices: also install ExecuTorch's runtime (torch "
              "from PyTorch's CPU index, executorch from PyPI), fetched by this host.")
@click.option("--json", "as_json", is_flag=True, help="Print the device report as JSON.")
@click.pass_context
def devices_setup(ctx, uri, rebuild, with_executorch, as_json):
    """Prepare URI: emu:* builds and caches the arm64 root filesystem with the runtimes (once);
    ssh:// installs numpy and ai-edge-litert into a virtual environment on the device (and with
    --with-executorch, torch and executorch, so .pte artifacts run there too)."""
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.devices_cmd import print_doctor, setup

        report = setup(uri, rebuild=rebuild, with_executorch=with_executorch)
        if as_json:
            import json

            click.echo(json.dumps(report, indent=2))
        elif not print_doctor(uri, report):
            sys.exit(EXIT_CHECK_FAILED)


@devices.command("doctor")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def devices_doctor(ctx, uri, as_json):
    """Show what URI can run: architecture, CPU, cores, Python, LiteRT and XNNPACK, ExecuTorch
    (and why not), free disk and memory. Exits 1 when it cannot run .tflite artifacts."""
    with handle_errors(ctx.obj["verbose"]):
        from edgeship.devices_cmd import doctor_report, print_doctor

        report = doctor_report(uri)
        if as_json:
            import json

            click.echo(json.dumps(report, indent=2))
            ok = bool((report.get("tflite") or {}).get("available"))
        else:
            ok = print_doctor(uri, report)
        if not ok:
            sys.exit(EXIT_CHECK_FAILED)


def main() -> None:
    try:
        cli(prog_name="edgeship")
    except click.exceptions.Exit as e:  # pragma: no cover - click handles these in standalone mode
        sys.exit(e.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
