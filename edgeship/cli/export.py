"""`edgeship export SOURCE`: one artifact per (format, recipe), with manifest.json and golden.npz."""

from __future__ import annotations

from pathlib import Path

import click

from edgeship.console import console
from edgeship.context import runtime_choices
from edgeship.convert import TARGETS
from edgeship.quantize.recipes import RECIPE_NAMES
from edgeship.stage_clock import Clock


def floats(text: str | None):
    return tuple(float(x) for x in text.split(",")) if text else None


@click.command("export", epilog="\b\nRoutes: torch -> tflite|pte|onnx, keras -> tflite|pte|onnx (SavedModel -> "
                                "tflite|onnx).\nRecipes: " + ", ".join(RECIPE_NAMES) + " (int8 needs --calib).")
@click.argument("source")
@click.option("--to", "targets", default="tflite,pte", show_default=True,
              help=f"Formats, comma-separated: {', '.join(TARGETS)}.")
@click.option("--quant", "recipes", default="fp32,int8", show_default=True,
              help=f"Recipes, comma-separated: {', '.join(RECIPE_NAMES)}; or auto (needs --max-drop and --eval): "
                   "per format, try int8 (best calibration), int8 with the fewest float layers (at most 10% of "
                   "the layers, at least one), "
                   "int16x8 where the format has it, and fp16; keep the fastest within budget (p50 on this host, "
                   "or on --device; 1 thread; p50s within 5% tie, broken by size) under its recipe's usual name "
                   "(<name>.<recipe>.<format>); the search table goes to the terminal and manifest.json. No "
                   "candidate within budget: the smallest drop is kept and export exits 1.")
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
@click.option("--metric", default="top1", show_default=True, metavar="NAME|module.py:fn",
              help="--max-drop's measure: top1 (points lost), cosine ((1-cosine)x100), snr (noise power as % of "
                   "signal), or a task metric (top5, map50, map50_95, miou, psnr) or your own module.py:fn, "
                   "whose drop from the float model's score is the measure.")
@click.option("--calibration", type=click.Choice(["minmax", "percentile", "mse", "entropy", "auto"]),
              help="Activation ranges for int8, through each route's own quantizer (default: the route's: mse "
                   "for PT2E routes, minmax for onnxruntime and TFLiteConverter); auto measures each on --eval "
                   "(or a held-out half of --calib) and keeps the best. Recorded in the manifest with its score.")
@click.option("--cle", type=click.Choice(["off", "on", "auto"]), default="auto", show_default=True,
              help="Cross-layer equalization of a PyTorch or Keras model's conv -> ReLU -> conv pairs before int8 "
                   "(same float function); auto (the default) simulates int8 without and with it, "
                   "tries it for real only where the simulation gains 1 dB, keeps it only with a higher measured "
                   "SNR, no op leaving the delegate and p50 within 5%, and skips other sources.")
@click.option("--bias-correction", type=click.Choice(["off", "on", "auto"]), default="auto", show_default=True,
              help="Fold the output-mean shift that int8 weights cause in each conv/linear (measured on --calib, "
                   "layer by layer) into its bias, for calibrated recipes of a PyTorch nn.Module or a Keras model; "
                   "auto (the default) simulates int8 without and with it (PyTorch) and applies it, converting once, "
                   "where the simulation gains 2 dB; a Keras model is converted both ways and keeps the higher "
                   "measured SNR; it skips other sources. The fp32 artifact is never changed.")
@click.option("--keep-float-ranges", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="int8 keeps in float the layers whose activations one int8 scale per tensor cannot hold (over "
                   "80% of their non-zero values would round to zero, and over half at one scale per channel: a "
                   "power spectrum, a mask of -inf), measured on "
                   "the float model over --calib; printed and recorded in manifest.json (float_ranges). off "
                   "quantizes them.")
@click.option("--weight-rounding", type=click.Choice(["nearest", "gptq", "auto"]), default="nearest",
              show_default=True,
              help="How a PyTorch model's conv/linear weights are rounded onto the route's int8 grid for "
                   "calibrated recipes: nearest (the route's own), gptq (each layer's output error minimised on "
                   "--calib, GPTQ), or auto (both measured, the better weakest-output SNR kept).")
@click.option("--device", metavar="URI",
              help="--quant auto: measure each candidate's drop and p50 on this device (local, emu:rpi4, emu:rpi5, "
                   "ssh://user@host[:port], adb[:SERIAL]) instead of in this process; an unreachable device "
                   "exits 3 before any conversion. Other exports: validate the bundle with --device instead.")
@click.option("--floor", "floors", multiple=True, metavar="[RECIPE:]NAME=VALUE",
              help="Accept a known loss: the accuracy floor an artifact must meet against the float model on the "
                   "golden samples, NAME cosine (minimum) or top1_drop (maximum points), for one recipe or, "
                   "without RECIPE:, for all (repeatable). Default: each recipe's own (int8: cosine 0.98, top-1 "
                   "drop 1). An artifact below its floor is still written, marked in manifest.json, and makes "
                   "export exit 1; validate holds it to the same floor.")
@click.option("--runner", type=click.Path(path_type=Path), multiple=True,
              help="--device adb: your own native runner to push instead of edgeship's aarch64 runners "
                   "(LiteRT's benchmark_model, ExecuTorch's executor_runner); repeat for both.")
@click.option("--jobs", type=click.IntRange(min=1), metavar="N",
              help="Formats converted at once, each in a process forked after the model and data are prepared "
                   "(default: the cores here). A Keras or SavedModel source, or --quant auto, converts one format "
                   "at a time. A child computes with one torch thread, so a calibrated artifact can differ from "
                   "--jobs 1's in the last bits of its scales.")
@click.pass_context
def command(ctx, source, targets, recipes, calib, eval_data, out, force, trust_source, framework, input_shape,
            int8_io, calib_samples, calib_min, golden_samples, name, image_size, mean, std, layout, bgr,
            reference_device, max_drop, metric, calibration, cle, bias_correction, weight_rounding, device, floors,
            runner, keep_float_ranges, jobs):
    """Export SOURCE to one artifact per (format, recipe), with manifest.json and golden.npz.

    SOURCE is file.py:factory or a .pt2 (PyTorch), a .keras/.h5 file or a SavedModel folder.
    """
    from edgeship.data import ImageOptions
    from edgeship.gates.floors import parse_floors
    from edgeship.pipeline import ExportFailed, ExportRequest, parse_targets
    from edgeship.pipeline import export as run_export
    from edgeship.sources import parse_input_shape

    image = ImageOptions(
        size=tuple(int(v) for v in image_size.lower().split("x")) if image_size else None,
        mean=floats(mean) or (0.0,), std=floats(std) or (1.0,), layout=layout, bgr=bgr,
    )
    req = ExportRequest(
        source=source, out=out, targets=parse_targets(targets), recipes=recipes, calib=calib, eval=eval_data,
        calib_samples=calib_samples, calib_min=calib_min, golden_samples=golden_samples, framework=framework,
        input_shapes=[parse_input_shape(v) for v in input_shape], image=image, int8_io=int8_io, force=force,
        trust_source=trust_source, name=name, verbose=ctx.obj["verbose"], reference_device=reference_device,
        max_drop=max_drop, metric=metric, calibration=calibration, cle=cle, bias_correction=bias_correction,
        weight_rounding=weight_rounding, device=device, floors=parse_floors(floors),
        keep_float_ranges=keep_float_ranges, jobs=jobs,
    )
    with runtime_choices(adb_runners=runner):  # this command's only
        try:
            result = run_export(req)
        except ExportFailed as e:  # the bundle is written: show it, then the verdict's exit 1
            _summary(e.result)
            raise
    _summary(result)


def _summary(result) -> None:
    from edgeship.reports.tables import export_table

    console().print(export_table(result.manifest))
    console().print(f"bundle: {result.bundle}")
    if result.model is not None and result.manifest.get("timings"):  # exported now, not found up to date
        console().print(f"time: {Clock.line(result.manifest['timings'])}")
