"""`edgeship demo`: the embedded default. Real data (scikit-learn's digits), real converters.

Trains a small CNN in PyTorch and one in Keras, exports each to every requested format and
recipe, validates every artifact on the host against the held-out digits, prints the table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from edgeship import quiet
from edgeship.console import console, info
from edgeship.errors import EXIT_CHECK_FAILED, InputError
from edgeship.status import Status

DEMO_MARKER = ".edgeship-demo"
HELD_OUT = 450  # the whole digits test split: accuracy to 0.2 points


def _prepare(out: Path) -> None:
    if out.exists() and not (out / DEMO_MARKER).exists() and any(out.iterdir()):
        raise InputError(f"'{out}' exists and is not an edgeship demo folder", hint="pass another --out")
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).touch()


def _train(framework: str, models: Path, verbose: bool) -> tuple[str, float]:
    from edgeship import demo_models

    if framework == "torch":
        module, acc = demo_models.train_torch_cnn()
        return str(demo_models.save_torch_pt2(module, models / "digits_torch.pt2")), acc
    # TensorFlow prints absl's and oneDNN's lines on fd 2 as it loads: they go to the export's log
    with quiet.loading_output_held(verbose):
        model, acc = demo_models.train_keras_cnn()
        path = models / "digits_keras.keras"
        model.save(path)
    return str(path), acc


def run_demo(out: Path, targets: str, recipes: str, frameworks: str, verbose: bool = False) -> bool:
    from edgeship.pipeline import ExportRequest, export, parse_targets
    from edgeship.reports.tables import export_table, print_validate, write_json
    from edgeship.validation import ValidateRequest, validate

    wanted = [f.strip() for f in frameworks.split(",") if f.strip()]
    for f in wanted:
        if f not in ("torch", "keras"):
            raise InputError(f"unknown framework '{f}'", hint="use torch, keras or torch,keras")
    target_list = parse_targets(targets)
    out = Path(out)
    _prepare(out)
    t_start = time.perf_counter()
    all_ok = True
    for framework in wanted:
        info(f"[bold]train[/] a {framework} CNN on scikit-learn's digits (1,347 training images)")
        source, acc = _train(framework, out / "models", verbose)
        info(f"  held-out top-1 of the float model: {acc:.1f}%")
        bundle = out / f"digits_{framework}"
        result = export(ExportRequest(
            source=source, out=bundle, targets=target_list, recipes=recipes, calib="digits:train",
            eval="digits:test", golden_samples=HELD_OUT, force=True, name=f"digits_{framework}", verbose=verbose,
        ))
        console().print(export_table(result.manifest))
        results, context = validate(ValidateRequest(bundle, verbose=verbose))
        print_validate(results, context)
        write_json(bundle / "validate.json", results, context)
        all_ok &= all(r["status"] == Status.PASS for r in results)
    console().print(f"demo finished in {time.perf_counter() - t_start:.0f} s; bundles and reports in {out}/")
    return all_ok


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgeship-demo"), show_default=True,
              help="Folder for the trained models and the bundles.")
@click.option("--to", "targets", default="tflite,pte", show_default=True, help="Formats, comma-separated.")
@click.option("--quant", "recipes", default="fp32,int8", show_default=True, help="Recipes, comma-separated.")
@click.option("--framework", "frameworks", default="torch,keras", show_default=True,
              help="Frameworks to train in, comma-separated.")
@click.pass_context
def command(ctx, out, targets, recipes, frameworks):
    """Train small CNNs on scikit-learn's digits in PyTorch and Keras, export both to both
    formats, validate everything on the host, and print the table. No files needed."""
    if not run_demo(out, targets, recipes, frameworks, ctx.obj["verbose"]):
        sys.exit(EXIT_CHECK_FAILED)
