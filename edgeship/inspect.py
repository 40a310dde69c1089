"""What is inside an artifact: ops, delegation, tensors, quantization, size by part."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgeship.children import die_with_parent
from edgeship.console import console
from edgeship.convert import xnnpack_delegation
from edgeship.errors import ArtifactError, InputError
from edgeship.model import IOSpec
from edgeship.reports.tables import size_str
from edgeship.runtime.base import RUNNER_MODULES, describe_exit, format_of, parse_agent_stdout


def inspect_file(path: Path, isolated: bool = True, timeout: float = 300.0) -> dict:
    """Details of an artifact. isolated: read it in a child process, so a runtime that crashes
    on a corrupt file cannot take edgeship down (export reads its own fresh artifacts in-process)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"artifact not found: '{path}'")
    fmt = format_of(str(path))
    if fmt is None:
        raise InputError(f"'{path}' is not a .tflite, .pte or .onnx artifact")
    hint = f"the file is corrupt or not a .{fmt} artifact"
    if not isolated:
        module = importlib.import_module(f"edgeship.runtime.standalone.{RUNNER_MODULES[fmt]}")
        try:
            return module.inspect_artifact(str(path))
        except ValueError as e:
            raise ArtifactError(f"cannot read '{path}': {e}", hint=hint) from None
    import subprocess
    import sys


    cmd = [sys.executable, "-m", "edgeship.runtime.standalone.agent", "inspect", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=die_with_parent())
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"reading '{path}' hung for {timeout:.0f} s", hint=hint) from None
    result = parse_agent_stdout(proc.stdout)
    if result is None:
        raise ArtifactError(f"cannot read '{path}': {describe_exit(proc.returncode, proc.stderr)}", hint=hint)
    if not result["ok"]:
        raise ArtifactError(f"cannot read '{path}': {result['error']}", hint=hint)
    return result["details"]


def artifact_io(path: Path, model_io: IOSpec, io_quantization: dict | None = None) -> dict:
    """The artifact's I/O signature under the model's names, with dtypes and quantization."""
    details = inspect_file(path, isolated=False)
    io_quantization = io_quantization or {}

    def merge(specs, found, quant):
        out = []
        for i, spec in enumerate(specs):
            a = found[i] if i < len(found) else {}
            q = a.get("quantization") or (quant[i] if i < len(quant) else None)
            out.append({
                "name": spec.name,
                "artifact_name": a.get("name"),
                "shape": list(a.get("shape", spec.shape)),
                "dtype": a.get("dtype", spec.dtype),
                "layout": spec.layout,
                "quantization": q,
            })
        return out

    return {
        "inputs": merge(model_io.inputs, details.get("inputs", []), io_quantization.get("inputs", [])),
        "outputs": merge(model_io.outputs, details.get("outputs", []), io_quantization.get("outputs", [])),
    }


def print_inspect(path: Path, d: dict) -> None:
    from rich.markup import escape
    from rich.table import Table


    c = console()
    parts = ", ".join(f"{k} {size_str(v)}" for k, v in (d.get("parts") or {}).items())
    c.print(f"[bold]{Path(path).name}[/]: {d['format']}, {size_str(d['size_bytes'])}" + (f" ({parts})" if parts else ""))
    total, delegated = d.get("total_ops"), d.get("delegated_ops")
    if total and delegated is None:
        c.print(f"ops: {total}, run by {d.get('runtime') or 'the runtime'} (no delegate)")
    elif total:  # the figure the manifest, export, validate and check's gate give for this file
        summary = xnnpack_delegation.summarize(d, d["format"], "XNNPACK")
        c.print(f"ops: {total}, delegated: {delegated} ({summary['coverage'] * 100:.0f}%)")
        if summary["fallback"]:
            c.print(f"[yellow]warning[/] not delegated: {escape(summary['fallback'])}")
    quantized = [t for t in d.get("tensors") or [] if t.get("quantization")]
    if quantized:
        per_channel = sum(isinstance(t["quantization"].get("scale"), list) for t in quantized)
        c.print(f"quantized tensors: {len(quantized)} ({per_channel} per-channel)")
    ops = Table(title="ops", title_justify="left")
    for col in ("op", "count", "delegated"):
        ops.add_column(col)
    for op in d.get("ops", []):
        dl = op.get("delegated")
        ops.add_row(op["op"], str(op["count"]), "—" if dl is None else ("yes" if dl else "[yellow]no[/]"))
    c.print(ops)
    io = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "scale", "zero point"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in d.get(kind, []):
            q = t.get("quantization") or {}
            io.add_row(kind[:-1], str(t.get("name")), "x".join(map(str, t.get("shape", []))), str(t.get("dtype")),
                       _q(q.get("scale")), _q(q.get("zero_point")))
    c.print(io)


def _q(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, (list, tuple)):
        return f"{len(v)} per-channel" if len(v) > 1 else (_q(v[0]) if v else "—")
    return f"{v:.6g}" if isinstance(v, float) else str(v)
