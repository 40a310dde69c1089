"""Shared by the two .tflite routes: quiet converters, their last words, and small flatbuffer fixes.

  quiet_native_output()  the converters' C++ and Python chatter goes to a log, not the terminal
  converting()           a quiet step whose failure is a ConversionError with the converter's last words
  order_io()             subgraph inputs/outputs in the model's order (TF sorts signature keys)
  float_io()             QUANTIZE/DEQUANTIZE at the boundary of an int8-I/O model: float I/O
  finish()               order, check and write the artifact; its warnings and XNNPACK coverage; in an
                         int8 artifact each int8 HARD_SWISH (float-only in XNNPACK) becomes int8
                         ADD/MUL/MUL that XNNPACK takes (tflite_hard_swish.py)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeship.convert import xnnpack_delegation
from edgeship.convert.tflite_hard_swish import hard_swish_as_xnnpack_ops
from edgeship.convert.tflite_opcodes import opcode_index
from edgeship.errors import ConversionError, EdgeshipError, InputError
from edgeship.quiet import fds_redirected, writes_to_fd
from edgeship.runtime.standalone.tflite import inspect_bytes

# The message after the last "error:" on a line (MLIR prefixes it with locations), and the last
# line of a Python exception; converter summaries like "Custom ops: Svd" are kept as extra detail.
_ERROR_LINE = re.compile(r".*\berror:\s*(.+)", re.IGNORECASE)
_PY_ERROR = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception):\s*(.+)")
_OPS_SUMMARY = re.compile(r"^\s*((?:Custom|Flex) ops:\s*.+)$", re.MULTILINE)
_GENERIC = ("failed while converting", "could not translate mlir")
UNSUPPORTED_OP_HINT = (
    "the op has no LiteRT builtin kernel: rewrite that layer with supported ops "
    "(https://ai.google.dev/edge/litert/models/ops_compatibility), or run with --verbose for the full log"
)


class NativeLog:
    """What the converter printed while quiet_native_output was active."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def quiet_native_output(verbose: bool = False):
    """Send fds 1 and 2 (TF/absl/MLIR C++ logging) and Python's stdout, warnings and logging to a
    log while converting. Python's sys.stderr keeps writing to the terminal, so progress bars show."""
    log = NativeLog()
    if verbose:
        yield log
        return
    real_stderr = sys.stderr
    py_out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            with fds_redirected(sink) as saved:
                swapped = None
                if writes_to_fd(real_stderr, 2):  # keep the terminal for progress bars
                    swapped = io.TextIOWrapper(os.fdopen(os.dup(saved[2]), "wb"), line_buffering=True)
                    sys.stderr = swapped
                try:
                    with contextlib.redirect_stdout(py_out), warnings.catch_warnings(), _logging_off():
                        warnings.simplefilter("ignore")
                        yield log
                finally:
                    sys.stdout.flush()
                    if swapped is not None:
                        sys.stderr = real_stderr
                        swapped.close()
        finally:
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace") + "\n" + py_out.getvalue()


@contextlib.contextmanager
def _logging_off():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def last_error_line(exc: BaseException, log_text: str = "") -> str:
    """The converter's own words: the last specific 'error: ...' message of its exception (else of
    its log), else the exception's first line (Python errors put the message first)."""
    for text in (str(exc), log_text):
        matches = (_ERROR_LINE.match(line) or _PY_ERROR.match(line) for line in text.splitlines())
        found = [m.group(1).strip() for m in matches if m]
        specific = [f for f in found if f and not f.endswith(":") and not f.lower().startswith(_GENERIC)]
        if specific or found:
            line = _strip_location((specific or found)[-1])
            summary = _OPS_SUMMARY.findall(text)
            return _shorten(line + (f" ({summary[-1].strip()})" if summary else ""))
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return _shorten(lines[0] if lines else type(exc).__name__)


_MLIR_OP_MESSAGE = re.compile(r"'[\w.]+' op\b.*")


def _strip_location(line: str) -> str:
    """Drop MLIR's leading source location ('loc(callsite(...)): ', '"name"("file":1:0)): ')."""
    m = _MLIR_OP_MESSAGE.search(line)
    if m:
        return m.group(0)
    if not line.startswith("loc("):
        return line
    depth = 0
    for i, ch in enumerate(line):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch == ")":
            return line[i + 1 :].lstrip(": ").strip() or line
    return line


def _shorten(line: str, limit: int = 400) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def conversion_error(what: str, exc: BaseException, log: NativeLog | None = None) -> ConversionError:
    line = last_error_line(exc, log.text if log else "")
    unsupported = any(w in line.lower() for w in ("neither a custom op nor a flex op", "lowering not found",
                                                  "not supported", "unsupported"))
    hint = UNSUPPORTED_OP_HINT if unsupported else "run with --verbose for the converter's full output"
    return ConversionError(f"{what}: {line}", hint=hint)


@contextlib.contextmanager
def converting(what: str, verbose: bool = False):
    """Run one converter step quietly; its exception becomes a ConversionError carrying the
    converter's own last words (from the exception, else from what it logged)."""
    log = None
    try:
        with quiet_native_output(verbose) as log:
            yield
    except EdgeshipError:
        raise
    except Exception as e:
        raise conversion_error(what, e, log) from None


def check_static(model) -> None:
    """Static shapes only. The first dimension may be any size: a batch of 1, or an input taken
    whole (an RNN state (2, 1, 128), a time-first (6, 4)), whose samples are fed as they are."""
    for s in model.io.inputs:
        if any(int(d) < 1 for d in s.shape):
            raise InputError(
                f"input '{s.name}' has shape {list(s.shape)}; .tflite export needs static shapes",
                hint="pass --input-shape NAME=1x...",
            )


def arg_name(name: str, i: int) -> str:
    """A signature argument name: the model's input name made a valid identifier."""
    clean = re.sub(r"\W", "_", name.split(":")[0]).strip("_")
    return clean if clean and not clean[0].isdigit() else f"input_{i}"


# ---------------------------------------------------------------------------------------------
# Flatbuffer fixes (ai_edge_litert ships the schema and the object API helpers)


def signature_tensors(data: bytes) -> tuple[dict[str, int], dict[str, int]] | None:
    """{key: tensor index} for the inputs and outputs of the model's only signature on subgraph 0."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(data, 0)
    if model.SignatureDefsLength() != 1:
        return None
    sig = model.SignatureDefs(0)
    if sig.SubgraphIndex() != 0:
        return None
    ins = {sig.Inputs(i).Name().decode(): sig.Inputs(i).TensorIndex() for i in range(sig.InputsLength())}
    outs = {sig.Outputs(i).Name().decode(): sig.Outputs(i).TensorIndex() for i in range(sig.OutputsLength())}
    return ins, outs


def order_io(data: bytes, input_keys: list[str], output_keys: list[str]) -> tuple[bytes, list[str]]:
    """Rewrite subgraph 0's input and output index lists so they follow the model's order, given as
    signature keys. The lists are permuted in place (same bytes, new order). Returns (data, warnings)."""
    from ai_edge_litert import schema_py_generated as fb

    found = signature_tensors(data)
    if found is None:
        return data, ["the artifact has no single signature; its input/output order is the converter's"]
    sig_in, sig_out = found
    buf = bytearray(data)
    graph = fb.Model.GetRootAs(buf, 0).Subgraphs(0)
    notes = []
    for slot, keys, sig, what in ((6, input_keys, sig_in, "inputs"), (8, output_keys, sig_out, "outputs")):
        if sorted(keys) != sorted(sig):
            notes.append(f"signature {what} {sorted(sig)} do not match the model's {keys}; order left as converted")
            continue
        vector = graph._tab.Vector(graph._tab.Offset(slot))
        current = list(struct.unpack_from(f"<{len(keys)}i", buf, vector))
        wanted = [sig[k] for k in keys]
        if sorted(current) != sorted(wanted):
            notes.append(f"signature {what} point at tensors other than the subgraph's; order left as converted")
            continue
        struct.pack_into(f"<{len(wanted)}i", buf, vector, *wanted)
    return bytes(buf), notes


def float_io(data: bytes) -> bytes:
    """Give an int8-I/O model float32 I/O: a QUANTIZE op in front of each int8 input and a
    DEQUANTIZE op after each int8 output, with the tensors' own scales. Signature keys follow."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = model.subgraphs[0]
    quantize = opcode_index(model, fb.BuiltinOperator.QUANTIZE, version=2)
    dequantize = opcode_index(model, fb.BuiltinOperator.DEQUANTIZE, version=2)
    remap: dict[int, int] = {}
    front, back = [], []
    for role, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for pos, idx in enumerate(indices):
            t = graph.tensors[idx]
            q = t.quantization
            if t.type not in (fb.TensorType.INT8, fb.TensorType.INT16) or q is None or q.scale is None \
                    or len(q.scale) != 1:  # int16: the int16x8 recipe's I/O
                continue
            float_t = fb.TensorT()
            float_t.shape, float_t.shapeSignature = t.shape, t.shapeSignature
            float_t.type, float_t.buffer, float_t.name = fb.TensorType.FLOAT32, 0, t.name
            t.name = (t.name.decode() if isinstance(t.name, bytes) else t.name) + "_int8"
            graph.tensors.append(float_t)
            new = len(graph.tensors) - 1
            remap[idx] = new
            op = fb.OperatorT()
            if role == "input":
                op.opcodeIndex, op.inputs, op.outputs = quantize, [new], [idx]
                front.append(op)
            else:
                op.opcodeIndex, op.inputs, op.outputs = dequantize, [idx], [new]
                back.append(op)
            indices[pos] = new
    if not remap:
        return data
    graph.operators = front + list(graph.operators) + back
    for sig in model.signatureDefs or []:
        for entry in list(sig.inputs or []) + list(sig.outputs or []):
            entry.tensorIndex = remap.get(entry.tensorIndex, entry.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ---------------------------------------------------------------------------------------------


def check_io(data: bytes, model, int_io: bool) -> dict:
    """Load the artifact once: I/O count, shapes and types must be what the model says."""
    details = inspect_bytes(data)
    for kind in ("inputs", "outputs"):
        specs, found = getattr(model.io, kind), details[kind]
        if len(specs) != len(found):
            raise ConversionError(f"the artifact has {len(found)} {kind}, the model {len(specs)}")
        for spec, t in zip(specs, found):
            if kind == "inputs" and list(spec.shape) != list(t["shape"]):
                raise ConversionError(
                    f"artifact input '{t['name']}' has shape {t['shape']}, the model's '{spec.name}' "
                    f"{list(spec.shape)}", hint="inputs must be static with batch 1")
            want = "int8" if int_io else "float32"
            if spec.dtype == "float32" and t["dtype"] != want:
                raise ConversionError(f"artifact {kind[:-1]} '{t['name']}' is {t['dtype']}, expected {want}")
    return details


def float_ops(data: bytes) -> list[str]:
    """Ops of an integer model that still compute in float (besides QUANTIZE/DEQUANTIZE)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=bytes(data),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    left = []
    for op in it._get_ops_details():
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") and np.float32 in op["result_types"]:
            left.append(op["op_name"])
    return left


def int8_warnings(data: bytes) -> list[str]:
    left = float_ops(data)
    if not left:
        return []
    names = ", ".join(sorted(set(left)))
    return [f"{len(left)} op(s) stay float32 between QUANTIZE/DEQUANTIZE (the quantizer left them float, or the op has "
            f"no int8 kernel): {names}"]


def delegation(details: dict) -> dict:
    """Counted as `edgeship inspect` and the .pte route count it (xnnpack_delegation.summarize): DETAILS
    are inspect's, whose delegated ops are runtime.standalone.tflite.delegated_ops's (subgraph 0's ops in
    XNNPACK's partitions), the figure validate's native and Python runners report for the same file."""
    return xnnpack_delegation.summarize(details, "tflite", "XNNPACK")


def finish(data: bytes, model, recipe: str, int_io: bool, out_path: Path, input_keys: list[str],
           output_keys: list[str], verbose: bool = False) -> tuple[list[str], dict]:
    """Put the I/O in model order, check the artifact against the model, write it.
    Returns (warnings, delegation summary)."""
    if recipe == "int8":  # XNNPACK has no int8 HARD_SWISH: three int8 ops it takes instead
        data, _ = hard_swish_as_xnnpack_ops(data)
    with quiet_native_output(verbose):  # loading it prints the runtime's XNNPACK line
        data, notes = order_io(data, input_keys, output_keys)
        details = check_io(data, model, int_io)
        if recipe == "int8":
            notes += int8_warnings(data)
    Path(out_path).write_bytes(data)
    summary = delegation(details)
    if below := xnnpack_delegation.warning(summary):  # every artifact below 100% says which ops were left out
        notes.append(below)
    return notes, summary
