"""PyTorch -> .onnx: torch.onnx.export (the torch.export-based exporter, which needs onnxscript),
then the recipe with onnxruntime's tools (convert/onnx_common.py).

Modules and .pt2 ExportedPrograms both export with the dynamo exporter. If it fails on a module,
the TorchScript exporter (deprecated in PyTorch, still shipped) is tried once and the artifact
says so in its warnings. Inputs and outputs keep the model's names; shapes are static (batch 1),
as in the other formats.
"""

from __future__ import annotations

from pathlib import Path

from edgeship.convert import onnx_common as common
from edgeship.convert.base import ConvertOptions, ConvertResult
from edgeship.convert.torch_common import example_tensors
from edgeship.errors import ConversionError, UnsupportedError, error_line

ROUTE = "torch.onnx.export -> onnxruntime .onnx"


def convert(model, recipe, calib, out_path: Path, options: ConvertOptions) -> ConvertResult:
    if model.kind not in ("torch-module", "torch-exported"):
        raise UnsupportedError(f"the torch -> onnx route takes a PyTorch module or .pt2, not a '{model.kind}' model")
    common.check_recipe(recipe, calib, "torch")
    proto, exporter, notes = export_float(model, options.verbose)
    float_nodes = common.layer_nodes(proto, options.float_layers) if recipe.name == "int8" and options.float_layers \
        else ()
    step, more = common.apply_recipe(proto, recipe, calib, Path(out_path), options.int8_io, options.verbose,
                                       calibration=options.calibration, float_nodes=float_nodes)
    import torch

    kept = f", kept float: {', '.join(options.float_layers)}" if float_nodes else ""
    return ConvertResult(route=f"{exporter} -> {step}{kept} -> .onnx", tools={"torch": torch.__version__,
                         **common.versions("onnxscript")}, delegation=None, warnings=notes + more)


def export_float(model, verbose: bool = False):
    """(float32 ModelProto, which exporter made it, warnings)."""
    import torch


    examples = tuple(example_tensors(model))
    input_names = [s.name for s in model.io.inputs]
    output_names = [s.name for s in model.io.outputs]
    subject = model.obj if model.kind == "torch-exported" else model.obj.eval()
    try:
        with common.quiet(verbose):
            program = torch.onnx.export(subject, examples, dynamo=True, input_names=input_names,
                                        output_names=output_names, optimize=True, verbose=False)
        return program.model_proto, "torch.onnx.export (dynamo)", []
    except Exception as e:
        first = error_line(e, with_type=True)
    if model.kind == "torch-exported":
        raise ConversionError(f"torch.onnx.export failed on the exported program: {first}",
                              hint="run with --verbose for the exporter's log, or try --to pte or tflite")
    import io

    import onnx

    buffer = io.BytesIO()
    try:
        with common.quiet(verbose):
            torch.onnx.export(subject, examples, buffer, dynamo=False, input_names=input_names,
                              output_names=output_names, do_constant_folding=True)
    except Exception as e:
        raise ConversionError(f"torch.onnx.export failed: {first}; the TorchScript exporter too: "
                              f"{error_line(e, with_type=True)}", hint="run with --verbose for the exporter's log") from None
    return onnx.load_from_string(buffer.getvalue()), "torch.onnx.export (TorchScript)", [
        f"the dynamo exporter failed ({first}); exported with the deprecated TorchScript exporter"]
