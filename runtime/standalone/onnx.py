"""Run and inspect .onnx artifacts with onnxruntime. Standalone: stdlib, numpy and onnxruntime.

The session runs on onnxruntime's CPU execution provider with `threads` intra-op threads (one
inter-op thread, sequential execution), so a thread count means the same as for LiteRT and
ExecuTorch. `inspect_artifact` reads the graph (ops, initializers, Q/DQ scales) with the `onnx`
package where it is installed (the host); without it (a device), it reports what onnxruntime
itself exposes: I/O, size and the opset imports are then missing.

int8 artifacts from edgeship are QDQ graphs with float inputs and outputs; an artifact with
integer I/O is (de)quantized with the signature's scale and zero point, as the other runners do.
"""

from __future__ import annotations

import os

import numpy as np

from .tensors import from_tensor, to_tensor

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}
PROVIDER = "CPUExecutionProvider"


def _ort():
    import onnxruntime

    return onnxruntime


def runtime_version() -> str:
    return f"onnxruntime {_ort().__version__}"


def _check_size(size: int, where: str) -> None:
    if size == 0:
        raise ValueError(f"{where} is empty (0 bytes), not an ONNX model")


def _session(ort, where: str, threads: int | None, source):
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads or 1))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the runtime's warnings are not the user's
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[PROVIDER])
    except Exception as e:  # onnxruntime raises its own InvalidProtobuf, Fail, InvalidGraph, ...
        msg = " ".join(str(e).split()) or type(e).__name__
        kind = type(e).__name__
        if kind in ("InvalidProtobuf", "DecodeError") or "protobuf" in msg.lower():
            raise ValueError(f"{where} is corrupt or not an ONNX model: {msg}") from None
        raise ValueError(f"{where} cannot be loaded by onnxruntime: {msg}") from None


class Runner:
    """Float32 in, float32 out, in the model's input/output order (see runtime/base.py)."""

    def __init__(self, path: str, signature: dict | None = None, threads: int = 1):
        self.path = str(path)
        _check_size(os.path.getsize(self.path), f"'{self.path}'")
        ort = _ort()
        self.runtime = f"onnxruntime {ort.__version__}"
        self.threads = max(1, int(threads or 1))
        self._session = _session(ort, f"'{self.path}'", self.threads, self.path)
        sig = signature or {}
        self._in = _ordered(self._session.get_inputs(), sig.get("inputs"), "inputs")
        self._out = _ordered(self._session.get_outputs(), sig.get("outputs"), "outputs")
        self._in_q = [_sig_quant(_dtype(a), sig.get("inputs"), i) for i, a in enumerate(self._in)]
        self._out_q = [_sig_quant(_dtype(a), sig.get("outputs"), i) for i, a in enumerate(self._out)]
        self.inputs = [_describe(a, q) for a, q in zip(self._in, self._in_q)]
        self.outputs = [_describe(a, q) for a, q in zip(self._out, self._out_q)]
        self._out_names = [a.name for a in self._out]
        self.delegate = {
            "name": PROVIDER,
            "active": None,  # onnxruntime has no delegate to fall back from: every node runs on this provider
            "detail": f"onnxruntime's CPU execution provider, {self.threads} intra-op thread(s)",
        }

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        if len(feeds) != len(self._in):
            raise ValueError(f"the model takes {len(self._in)} inputs, got {len(feeds)}")
        named = {}
        for a, q, x in zip(self._in, self._in_q, feeds):
            x = np.asarray(x)
            want = [d if isinstance(d, int) else None for d in a.shape]
            if len(want) != x.ndim or any(w is not None and w != n for w, n in zip(want, x.shape)):
                raise ValueError(f"input '{a.name}' takes shape {want}, got {list(x.shape)}")
            named[a.name] = to_tensor(x, np.dtype(_dtype(a)), q)
        outs = self._session.run(self._out_names, named)
        return [from_tensor(np.asarray(y), q) for y, q in zip(outs, self._out_q)]


def _dtype(arg) -> str:
    return _ORT_TYPES.get(arg.type, arg.type)


def _ordered(args: list, wanted: list[dict] | None, kind: str) -> list:
    """The session's inputs (or outputs) in the order the manifest's signature lists them:
    matched by the artifact's tensor name, else the model's name, else the artifact's own order."""
    if not wanted:
        return list(args)
    if len(wanted) != len(args):
        raise ValueError(f"the artifact has {len(args)} {kind}, its signature lists {len(wanted)}")
    by_name = {a.name: a for a in args}
    picked = [by_name.get(w.get("artifact_name")) or by_name.get(w.get("name")) or args[i]
              for i, w in enumerate(wanted)]
    if len({a.name for a in picked}) != len(picked):
        return list(args)
    return picked


def _sig_quant(dtype: str, entries: list[dict] | None, i: int) -> dict | None:
    if np.dtype(dtype).kind not in "iu" or not entries or i >= len(entries):
        return None
    q = entries[i].get("quantization") or {}
    scale, zp = q.get("scale"), q.get("zero_point", 0)
    scale = (scale or [None])[0] if isinstance(scale, (list, tuple)) else scale
    zp = (zp or [0])[0] if isinstance(zp, (list, tuple)) else zp
    return {"scale": float(scale), "zero_point": int(zp or 0)} if scale else None


def _describe(arg, q: dict | None) -> dict:
    shape = [d if isinstance(d, int) else -1 for d in arg.shape]
    return {"name": arg.name, "shape": shape, "dtype": _dtype(arg), "quantization": q}


# ---------------------------------------------------------------------------------------------
# Inspection


def inspect_artifact(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    return inspect_bytes(data, f"'{path}'")


def inspect_bytes(data: bytes, where: str = "the model") -> dict:
    _check_size(len(data), where)
    ort = _ort()
    session = _session(ort, where, 1, bytes(data))  # onnxruntime validates the graph first
    details = {
        "format": "onnx",
        "size_bytes": len(data),
        "parts": None,
        "ops": [],
        "delegated_ops": None,
        "total_ops": None,
        "delegate": {"name": PROVIDER, "active": None, "detail": "onnxruntime's CPU execution provider"},
        "runtime": f"onnxruntime {ort.__version__}",
        "inputs": [_describe(a, None) for a in session.get_inputs()],
        "outputs": [_describe(a, None) for a in session.get_outputs()],
        "tensors": [],
    }
    meta = session.get_modelmeta()
    details["producer"] = meta.producer_name
    try:
        import onnx
    except ImportError:
        return details
    try:
        model = onnx.load_from_string(bytes(data))
    except Exception as e:
        raise ValueError(f"{where} is corrupt or not an ONNX model: {type(e).__name__}: {e}") from None
    details.update(_graph_details(model, onnx))
    return details


def _graph_details(model, onnx) -> dict:
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    ops: dict[str, int] = {}
    for node in graph.node:
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        ops[name] = ops.get(name, 0) + 1
    quant: dict[str, dict] = {}  # tensor -> its scale/zero point, from the QuantizeLinear/DequantizeLinear reading it
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 2:
            target = node.input[0] if node.op_type == "DequantizeLinear" else node.output[0]
            scale = _values(inits.get(node.input[1]), numpy_helper)
            zp = _values(inits.get(node.input[2]), numpy_helper) if len(node.input) > 2 else [0]
            if scale is None:
                continue
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            quant[target] = ({"scale": float(scale[0]), "zero_point": int((zp or [0])[0])} if len(scale) == 1
                             else {"scale": [float(s) for s in scale], "zero_point": [int(z) for z in (zp or [])],
                                   "axis": int(axis)})
    weights = 0
    tensors = []
    for t in graph.initializer:
        array = numpy_helper.to_array(t)
        weights += array.nbytes
        tensors.append({"name": t.name, "shape": [int(d) for d in t.dims], "dtype": array.dtype.name,
                        "quantization": quant.get(t.name)})
    for vi in graph.value_info:
        if vi.name in quant and vi.name not in inits:
            tensors.append({"name": vi.name, "shape": _shape(vi), "dtype": _elem_dtype(vi, onnx),
                            "quantization": quant[vi.name]})
    op_list = [{"op": k, "count": v, "delegated": None} for k, v in sorted(ops.items(), key=lambda kv: -kv[1])]
    size = model.ByteSize()
    return {
        "parts": {"weights": weights, "graph": max(0, size - weights)},
        "ops": op_list,
        "total_ops": sum(ops.values()),
        "tensors": tensors,
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def _values(tensor, numpy_helper):
    if tensor is None:
        return None
    return numpy_helper.to_array(tensor).reshape(-1).tolist()


def _shape(vi) -> list[int]:
    dims = vi.type.tensor_type.shape.dim
    return [int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims]


def _elem_dtype(vi, onnx) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name
    except Exception:
        return "unknown"
