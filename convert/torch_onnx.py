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
from edgeship.convert.torch_common import example_tensors, exportable
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
    subject = model.obj if model.kind == "torch-exported" else exportable(model.obj.eval())
    try:
        with common.quiet(verbose):
            program = torch.onnx.export(subject, examples, dynamo=True, input_names=input_names,
                                        output_names=output_names, optimize=False, verbose=False)
            kept = _noop_lookalikes(program.model_proto)
            if not kept:
                program.optimize()  # what optimize=True does; held back where it would change the function
        if kept:
            return program.model_proto, "torch.onnx.export (dynamo, unoptimized)", [
                f"onnxscript's optimizer would remove {kept[0]} as a no-op (its x+0 / x*1 rules match constants "
                f"within 1e-8 of 0 and 1e-5 of 1), changing what the graph computes: exported unoptimized"
                + (f" ({len(kept)} such nodes)" if len(kept) > 1 else "")]
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


def _noop_lookalikes(proto) -> list[str]:
    """The Add/Sub/Mul/Div nodes whose scalar constant operand is near enough 0 (or 1) for
    onnxscript's no-op rules (rewriter/rules/common/_no_op.py: abs_tol 1e-8, rel_tol 1e-5) to
    match it without being it: `log(x + 1e-10)` would lose its epsilon and give -inf at x = 0."""
    import math

    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if _scalar_size(t.dims)}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and _scalar_size(a.t.dims):
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    found = []
    for node in proto.graph.node:
        target = {"Add": 0.0, "Sub": 0.0, "Mul": 1.0, "Div": 1.0}.get(node.op_type)
        if target is None:
            continue
        for name in node.input[1:] if node.op_type in ("Sub", "Div") else node.input:
            v = values.get(name)
            if v is None or v.dtype.kind != "f":
                continue
            c = float(v.reshape(-1)[0])
            if c != target and math.isclose(c, target, rel_tol=1e-5, abs_tol=1e-8):
                found.append(f"{node.op_type} '{node.name}' with {c:g}")
    return found


def _scalar_size(dims) -> bool:
    n = 1
    for d in dims:
        n *= d
    return n == 1
