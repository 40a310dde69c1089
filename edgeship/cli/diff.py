"""`edgeship diff ARTIFACT`: per-layer error of an int8 artifact against the float reference,
worst first, as a table and a bar chart PNG (quantize/layer_error.py does the measuring).

The float model, the calibration data and the layers kept in float come from the bundle's
manifest when the artifact sits in one; --source and --calib stand in otherwise. The inputs are
the bundle's golden vectors unless --data is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from edgeship import quiet
from edgeship.console import console, info, warn
from edgeship.errors import InputError

DEFAULT_SAMPLES = 64


@dataclass
class DiffRequest:
    artifact: Path
    data: str | None = None
    source: str | None = None
    calib: str | None = None
    samples: int = DEFAULT_SAMPLES
    png: Path | None = None
    json_path: Path | None = None
    verbose: bool = False


def run_diff(req: DiffRequest) -> dict:
    """Measure, print, write the PNG (and JSON). Returns the report."""
    from edgeship.bundle import find_bundle_of, write_json_atomic
    from edgeship.runtime.base import format_of

    artifact = Path(req.artifact)
    if not artifact.is_file():
        raise InputError(f"not found: '{artifact}'", hint="pass an int8 .tflite, .pte or .onnx artifact")
    fmt = format_of(str(artifact))
    if fmt not in ("tflite", "pte", "onnx"):
        raise InputError(f"'{artifact}' is not a .tflite, .pte or .onnx artifact",
                         hint="diff compares int8 .tflite, .pte and .onnx")
    found = find_bundle_of(artifact)
    bundle, record = found if found else (None, {})
    if record.get("recipe") not in (None, "int8"):
        raise InputError(f"'{artifact.name}' is a {record['recipe']} artifact; diff explains int8 artifacts",
                         hint="pass the bundle's .int8 artifact")
    kept = list((record.get("accuracy_aware") or {}).get("kept_float", []))
    with quiet.loading_output_held(req.verbose):  # what the frameworks print as they load and run stays off
        model = _model(req, bundle)  # the terminal (TensorFlow's absl and oneDNN lines); --verbose shows it
        feeds, data_note = _inputs(req, bundle, model)
        rows, note = _rank(req, bundle, record, model, artifact, feeds, kept)
    report = {
        "artifact": str(artifact),
        "format": fmt,
        "reference": note,
        "data": data_note,
        "samples": len(feeds),
        "kept_float": kept,
        "layers": [r.to_dict() for r in rows],
    }
    print_report(report)
    png = req.png or Path(f"{artifact.stem}.diff.png")
    write_png(report, png)
    info(f"chart: {png}")
    if req.json_path:
        write_json_atomic(Path(req.json_path), report)
    return report


def _model(req: DiffRequest, bundle):
    from edgeship.sources import load_model, source_sha256

    if req.source:
        return load_model(req.source)
    if bundle is None:
        raise InputError("diff needs the float model, and this artifact is not in a bundle",
                         hint="pass --source (the model the artifact was exported from)")
    m = bundle.manifest["model"]
    if not Path(m["source_path"]).exists():
        raise InputError(f"diff needs the source model, and '{m['source_path']}' is gone", hint="pass --source")
    if source_sha256(m["source_path"]) != m["source_sha256"]:
        warn(f"the source model '{m['source_path']}' changed since the bundle was exported")
    return load_model(m["source"], m["framework"])


def _inputs(req: DiffRequest, bundle, model) -> tuple[list, str]:
    import numpy as np

    from edgeship.data import load_data

    if req.data:
        arrays, note = load_data(req.data, model.io).take(req.samples).arrays, req.data
    elif bundle is not None:
        arrays, note = bundle.golden().inputs, "the bundle's golden vectors"
    else:
        raise InputError("no inputs to compare on", hint="pass --data DATA (e.g. digits:test)")
    n = min(req.samples, len(arrays[0]))
    return [[np.ascontiguousarray(a[i : i + 1]) for a in arrays] for i in range(n)], note


def _calibration(req: DiffRequest, bundle, model):
    from edgeship.data import load_data

    cal = (bundle.manifest.get("calibration") if bundle else None) or {}
    name = req.calib or cal.get("data")
    if not name:
        raise InputError("the .pte's int8 graph is rebuilt with its calibration data, and none is known",
                         hint="pass --calib DATA (the data the artifact was calibrated on)")
    ds = load_data(name, model.io)
    if cal.get("samples"):
        ds = ds.take(cal["samples"])
    if cal.get("sha256") and not req.calib and ds.sha256 != cal["sha256"]:
        warn(f"calibration data '{name}' is not what the bundle was calibrated on (hash differs)")
    return ds


def _rank(req: DiffRequest, bundle, record, model, artifact: Path, feeds, kept):
    """[LayerError] and the note of what was compared, through the route's ranker (quantize/rankers.py)."""
    from edgeship.quantize.rankers import ranker_for
    from edgeship.runtime.base import format_of

    target = format_of(str(artifact))
    if target in ("tflite", "onnx") and model.framework != "torch":
        ranker = ranker_for(model, target, None, feeds, req.verbose, fp32=lambda: _fp32_twin(bundle, model, target))
        return ranker.rank(kept, artifact), ranker.note
    calib = _calibration(req, bundle, model)
    where = "PT2E under Keras' torch backend" if model.framework != "torch" else "PT2E"
    ranker = ranker_for(model, target, calib, feeds, req.verbose)
    info(f"simulating the int8 graph on the host ({where}, {len(calib)} calibration samples)")
    return ranker.rank(kept), ranker.note


def _fp32_twin(bundle, model, target: str) -> bytes:
    from edgeship.convert import ConvertOptions, get_route
    from edgeship.quantize.rankers import fp32_twin

    if bundle is not None:
        twin = next((r for r in bundle.artifacts if r.get("format") == target and r.get("recipe") == "fp32"), None)
        if twin is not None and bundle.artifact_path(twin).exists():
            return bundle.artifact_path(twin).read_bytes()
    info("converting the fp32 counterpart (same route) to compare with")
    return fp32_twin(model, get_route(model.framework, target).load(), ConvertOptions(), target)


def run_stages(req: DiffRequest, device_uri: str | None) -> dict:
    """--stages: the stage bisection of one artifact (edgeship/stages.py), printed; the report."""
    from edgeship.bundle import find_bundle_of, write_json_atomic
    from edgeship.stages import bisect

    artifact = Path(req.artifact)
    if not artifact.is_file():
        raise InputError(f"not found: '{artifact}'", hint="pass a .tflite, .pte or .onnx artifact")
    found = find_bundle_of(artifact)
    bundle, record = found if found else (None, {})
    recipe = record.get("recipe") or _recipe_from_name(artifact)
    with quiet.loading_output_held(req.verbose):
        model = _model(req, bundle)
        feeds, data_note = _inputs(req, bundle, model)
        calib = _calibration(req, bundle, model) if recipe == "int8" and model.framework == "torch" else None
    device = None
    if device_uri:
        from edgeship.runtime.device import open_device

        device = open_device(device_uri)
        device.preflight()
    kept = list((record.get("accuracy_aware") or {}).get("kept_float", []))
    recorded = (record.get("smoke") or {}).get("floors")  # what export held it to (its --floor included)
    floors = {recipe: recorded} if recorded else None
    with quiet.loading_output_held(req.verbose):  # torchao's and torch.export's own lines stay off the terminal
        result = bisect(model, artifact, recipe, feeds, calib, device, floors, kept, log=info)
    report = {**result.to_dict(), "data": data_note}
    print_stages(report)
    if req.json_path:
        write_json_atomic(Path(req.json_path), report)
    return report


def _recipe_from_name(artifact: Path) -> str:
    from edgeship.quantize import RECIPES

    parts = artifact.name.split(".")
    found = [p for p in parts[1:-1] if p in RECIPES]
    if not found:
        raise InputError(f"the recipe of '{artifact.name}' is unknown: it is not in a bundle, and its name has none",
                         hint="diff an artifact inside its export bundle (NAME.RECIPE.FORMAT)")
    return found[-1]


def print_stages(report: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"[bold]{escape(Path(report['artifact']).name)}[/]: stage by stage against the float model "
                    f"({report['samples']} samples of {escape(report['data'])})", title_justify="left")
    for col in ("stage", "what", "SNR dB", "cosine", "floor", "vs previous", "verdict"):
        t.add_column(col, justify="right" if col in ("SNR dB", "cosine", "floor") else "left")
    for s in report["stages"]:
        if not s["ran"]:
            verdict = "[red]failed[/]" if s["passed"] is False else "[dim]skipped[/]"
            t.add_row(s["name"], escape(s["what"]), "", "", "", "", f"{verdict}: {escape(s['skipped'])}")
            continue
        v, p = s["vs_float"], s["vs_previous"]
        prev = f"{p['stage']}: cos {p['cosine']:.4f}" if p else ""
        floor = "" if s["floor"] is None else f"{s['floor']:g}"
        verdict = "reference" if s["name"] == "eager" else ("[green]within[/]" if s["passed"] else "[red]leaves[/]")
        t.add_row(s["name"], escape(s["what"]), f"{v['snr_db']:.1f}", f"{v['cosine']:.5f}", floor, prev, verdict)
    c = console()
    c.print(t)
    if report["first_failing"]:
        c.print(f"first stage out of tolerance: [bold]{report['first_failing']}[/]"
                + (f" ({escape(report['node'])})" if report["node"] else ""), soft_wrap=True)
    else:
        c.print("every stage that ran is within its floor", soft_wrap=True)


def print_report(report: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"[bold]{escape(Path(report['artifact']).name)}[/]: per-layer error, worst first "
                    f"({report['samples']} samples of {escape(report['data'])})", title_justify="left")
    for col in ("#", "layer", "type", "SNR dB", "SNR lost dB", "cosine", "max abs err", "float"):
        t.add_column(col, justify="left" if col in ("layer", "type", "float") else "right", no_wrap=True)
    for i, r in enumerate(report["layers"], 1):
        snr = "∞" if r["snr_db"] is None else f"{r['snr_db']:.1f}"
        t.add_row(str(i), escape(r["name"]), escape(r["kind"]), snr, f"{r['added_db']:.1f}", f"{r['cosine']:.5f}",
                  f"{r['max_abs_error']:.3g}", "kept float" if r["name"] in report["kept_float"] else "")
    c = console()
    c.print(t)
    c.print(f"reference: {escape(report['reference'])}", soft_wrap=True)
    if report["layers"]:
        w = report["layers"][0]
        c.print(f"worst layer: [bold]{escape(w['name'])}[/] ({escape(w['kind'])}), loses {w['added_db']:.1f} dB "
                f"of SNR; keep it in float with `edgeship export ... --max-drop`", soft_wrap=True)


def write_png(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["layers"]
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, max(2.5, 0.4 * len(rows) + 1.2)), sharey=True)
    y = list(range(len(rows)))
    axes[0].barh(y, [r["added_db"] for r in rows], color="tab:red")
    axes[0].set_xlabel("SNR lost at this layer (dB)")
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[1].barh(y, [60.0 if r["snr_db"] is None else min(r["snr_db"], 60.0) for r in rows], color="tab:blue")
    axes[1].set_xlabel("SNR of the layer's output (dB, capped at 60)")
    fig.suptitle(f"{Path(report['artifact']).name}: per-layer int8 error, worst first", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)


@click.command("diff")
@click.argument("paths", nargs=-1, required=True, metavar="[SOURCE] ARTIFACT", type=click.Path(path_type=Path))
@click.option("--stages", is_flag=True,
              help="Bisect by stage: eager, exported, quantized (simulated), the artifact here, on --device; "
                   "name the first that leaves its floor.")
@click.option("--device", "device_uri", metavar="URI", help="--stages: also run the artifact there (e.g. emu:rpi4).")
@click.option("--data", metavar="DATA", help="Inputs to compare on (default: the bundle's golden vectors).")
@click.option("--source", help="The float model (default: the bundle's source).")
@click.option("--calib", metavar="DATA", help=".pte: the calibration data (default: the bundle's).")
@click.option("--samples", default=DEFAULT_SAMPLES, show_default=True, help="Samples to compare on.")
@click.option("--png", type=click.Path(path_type=Path), help="Bar chart to write (default: ARTIFACT-stem.diff.png here).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the per-layer numbers as JSON.")
@click.pass_context
def command(ctx, paths, stages, device_uri, data, source, calib, samples, png, json_path):
    """Per-layer error of an int8 artifact against the float model: SNR, cosine and max error of
    each layer's output, worst first (by SNR lost at the layer), and a bar chart PNG.

    .tflite from Keras: the int8 artifact's intermediate tensors vs the fp32 .tflite of the same
    route. .pte (from PyTorch or Keras) and .tflite from PyTorch: the route's int8 graph simulated
    on the host (PT2E q/dq graph vs the float graph): ExecuTorch exposes no intermediate tensors,
    and litert-torch renames them.

    --stages [SOURCE] ARTIFACT runs the same inputs through every stage the model passed on its way
    to the artifact (eager, torch.export, the simulated int8 graph, the artifact on this host, on
    --device), holds each against the float model at the recipe's floor, and names the first
    stage that leaves it; exit 1 when one does:

        edgeship diff --stages model.py:build bundle/model.int8.pte --device emu:rpi4
    """
    if len(paths) > 2 or (len(paths) == 2 and not stages):
        raise InputError(f"diff takes one ARTIFACT{' (or SOURCE ARTIFACT with --stages)' if not stages else ''}, "
                         f"not {len(paths)} paths", hint="edgeship diff ARTIFACT, or edgeship diff --stages SOURCE "
                                                         "ARTIFACT")
    if device_uri and not stages:
        raise InputError("--device is where --stages runs its last stage", hint="add --stages")
    if len(paths) == 2:
        if source:
            raise InputError("the source was given twice (SOURCE and --source)", hint="pass one of them")
        source = str(paths[0])
    req = DiffRequest(paths[-1], data, source, calib, samples, png, json_path, ctx.obj["verbose"])
    if stages:
        from edgeship.errors import CheckFailed

        report = run_stages(req, device_uri)
        if report["first_failing"]:
            raise CheckFailed(f"{Path(req.artifact).name} leaves its floor first at stage '{report['first_failing']}'"
                              + (f": {report['node']}" if report["node"] else ""),
                              hint="the table above holds every stage against the float model")
        return
    run_diff(req)
