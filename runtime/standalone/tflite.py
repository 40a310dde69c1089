"""Run and inspect .tflite (LiteRT) artifacts. Standalone: stdlib, numpy and a TFLite runtime.

The interpreter comes from ai_edge_litert, else tflite_runtime, else tf.lite (TensorFlow is
imported only when neither is installed). XNNPACK, the runtime's default CPU delegate, is applied
when tensors are allocated; whether it took the graph is read from the interpreter itself: the
delegate replaces the ops it takes with DELEGATE nodes appended after the model's own ops.
"""

from __future__ import annotations

import os

import numpy as np

from .tensors import from_tensor, to_tensor

_IDENTIFIER = b"TFL3"
_DELEGATE_NODE = "DELEGATE"


def _interpreter_class():
    """(Interpreter class, 'package version')."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}"
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("no TFLite runtime: pip install ai-edge-litert") from None
    return tf.lite.Interpreter, f"tensorflow {tf.__version__} (tf.lite)"


def _check_bytes(head: bytes, size: int, where: str) -> None:
    if size == 0:
        raise ValueError(f"{where} is empty (0 bytes), not a TFLite model")
    if size < 8 or head[4:8] != _IDENTIFIER:
        raise ValueError(f"{where} is not a TFLite model (file identifier {head[4:8]!r}, expected {_IDENTIFIER!r})")


def _load(Interpreter, where: str, threads: int | None = None, **source):
    try:
        it = Interpreter(num_threads=threads, **source)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:  # the runtime verifies the flatbuffer before using it
        msg = " ".join(str(e).split()) or type(e).__name__
        if "flatbuffer" in msg.lower() or "null/empty" in msg:
            raise ValueError(f"{where} is corrupt or truncated: {msg}") from None
        raise ValueError(f"{where} cannot be loaded by this runtime: {msg}") from None
    return it


class Runner:
    """Float32 in, float32 out, in the model's input/output order (see runtime/base.py)."""

    def __init__(self, path: str, signature: dict | None = None, threads: int = 1):
        self.path = str(path)
        with open(self.path, "rb") as f:
            head = f.read(8)
        _check_bytes(head, os.path.getsize(self.path), f"'{self.path}'")
        Interpreter, self.runtime = _interpreter_class()
        self._it = _load(Interpreter, f"'{self.path}'", threads=max(1, int(threads)), model_path=self.path)
        self.threads = threads
        sig = signature or {}
        self._in = _ordered(self._it, self._it.get_input_details(), sig.get("inputs"), "inputs")
        self._out = _ordered(self._it, self._it.get_output_details(), sig.get("outputs"), "outputs")
        self._in_q = [_io_quant(d, sig.get("inputs"), i) for i, d in enumerate(self._in)]
        self._out_q = [_io_quant(d, sig.get("outputs"), i) for i, d in enumerate(self._out)]
        self.inputs = [_describe(d, q) for d, q in zip(self._in, self._in_q)]
        self.outputs = [_describe(d, q) for d, q in zip(self._out, self._out_q)]
        self.delegate = _delegate_status(self._it)
        # Per-call work decided once: the harness loop stays close to a bare interpreter loop.
        self._in_plan = [(d["index"], tuple(int(n) for n in d["shape"]), np.dtype(d["dtype"]), q, d["name"])
                         for d, q in zip(self._in, self._in_q)]
        self._out_plan = [(d["index"], q) for d, q in zip(self._out, self._out_q)]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        if len(feeds) != len(self._in_plan):
            raise ValueError(f"the model takes {len(self._in_plan)} inputs, got {len(feeds)}")
        it = self._it
        for (index, shape, dtype, q, name), x in zip(self._in_plan, feeds):
            if type(x) is not np.ndarray:
                x = np.asarray(x)
            if x.shape != shape:
                raise ValueError(f"input '{name}' takes shape {list(shape)}, got {list(x.shape)}")
            if x.dtype != dtype or not x.flags.c_contiguous:
                x = to_tensor(x, dtype, q)
            it.set_tensor(index, x)
        it.invoke()
        return [from_tensor(it.get_tensor(index), q) for index, q in self._out_plan]


def _ordered(it, details: list[dict], wanted: list[dict] | None, kind: str) -> list[dict]:
    """The interpreter's inputs (or outputs) in the order `wanted` (the manifest's signature) lists
    them: matched by tensor name, else by signature key, else taken in the artifact's own order."""
    if not wanted:
        return list(details)
    if len(wanted) != len(details):
        raise ValueError(f"the artifact has {len(details)} {kind}, its signature lists {len(wanted)}")
    by_name = {d["name"]: d for d in details}
    by_index = {d["index"]: d for d in details}
    by_key = {}
    try:
        lists = it.get_signature_list()
        if len(lists) == 1:
            runner = it.get_signature_runner(next(iter(lists)))
            keyed = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
            by_key = {k: by_index[v["index"]] for k, v in keyed.items() if v["index"] in by_index}
    except (ValueError, RuntimeError, KeyError, AttributeError):
        by_key = {}
    picked = []
    for i, w in enumerate(wanted):
        d = by_name.get(w.get("artifact_name")) or by_key.get(w.get("name")) or details[i]
        picked.append(d)
    if len({d["index"] for d in picked}) != len(picked):  # names matched ambiguously: trust the file
        return list(details)
    return picked


def _quant(d: dict) -> dict | None:
    scale, zero_point = d.get("quantization", (0.0, 0))
    if not scale or np.dtype(d["dtype"]).kind not in "iu":
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}


def _io_quant(d: dict, entries: list[dict] | None, i: int) -> dict | None:
    """An integer I/O tensor's scale and zero point: its own, else the signature's."""
    if np.dtype(d["dtype"]).kind not in "iu":
        return None
    return _quant(d) or _sig_quant(entries, i)


def _sig_quant(entries: list[dict] | None, i: int) -> dict | None:
    if not entries or i >= len(entries):
        return None
    q = entries[i].get("quantization") or {}
    scale, zp = q.get("scale"), q.get("zero_point", 0)
    scale = (scale or [None])[0] if isinstance(scale, (list, tuple)) else scale
    zp = (zp or [0])[0] if isinstance(zp, (list, tuple)) else zp
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zp or 0)}


def _describe(d: dict, q: dict | None) -> dict:
    return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
            "quantization": q}


# ---------------------------------------------------------------------------------------------
# Delegation


def _nodes(it) -> list[dict]:
    return [
        {"op": it._interpreter.NodeName(i), "inputs": [int(t) for t in it._interpreter.NodeInputs(i)],
         "outputs": [int(t) for t in it._interpreter.NodeOutputs(i)]}
        for i in range(it._interpreter.NumNodes())
    ]


def delegated_ops(nodes: list[dict], n_ops: int) -> list[bool]:
    """Which of the model's first n_ops nodes a delegate took: edgeship's one definition of a
    .tflite's delegation (inspect, the manifest, export's warning and the Python runner's record
    count it here; the native runner counts the same ops from LiteRT's profiler, litert_runner.cpp).
    The ops counted are subgraph 0's, the model's main graph; a WHILE's condition and body are
    subgraphs of their own and not counted (the WHILE op is, as one op). Each DELEGATE node lists the
    tensors its partition reads and writes: an op is in a partition if it writes one of the
    partition's outputs, or writes a tensor that an op of that partition reads from inside the
    partition."""
    producer = {}
    for i, node in enumerate(nodes[:n_ops]):
        for t in node["outputs"]:
            if t >= 0:  # -1: an optional tensor left out (a WHILE's unused output slot, a FULLY_CONNECTED's bias)
                producer[t] = i
    taken = [False] * n_ops
    for node in nodes[n_ops:]:
        if node["op"] != _DELEGATE_NODE:
            continue
        reads = set(node["inputs"])
        todo = [producer[t] for t in node["outputs"] if t in producer]
        while todo:
            i = todo.pop()
            if taken[i]:
                continue
            taken[i] = True
            todo.extend(producer[t] for t in nodes[i]["inputs"] if t in producer and t not in reads)
    return taken


def _delegate_status(it, n_ops: int | None = None) -> dict:
    try:
        nodes = _nodes(it)
    except Exception as e:  # an older runtime without node introspection
        return {"name": "XNNPACK", "active": None, "detail": f"cannot tell: {type(e).__name__}"}
    if n_ops is None:
        n_ops = next((i for i, n in enumerate(nodes) if n["op"] == _DELEGATE_NODE), len(nodes))
    partitions = sum(n["op"] == _DELEGATE_NODE for n in nodes[n_ops:])
    taken = sum(delegated_ops(nodes, n_ops))
    detail = (f"{taken} of {n_ops} ops in {partitions} XNNPACK partition(s)" if partitions
              else "no ops delegated: the interpreter runs TFLite's own CPU kernels")
    return {"name": "XNNPACK", "active": bool(partitions), "delegated_ops": taken, "total_ops": n_ops,
            "partitions": partitions, "detail": detail}


# ---------------------------------------------------------------------------------------------
# Inspection


def inspect_artifact(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    return inspect_bytes(data, f"'{path}'")


def inspect_bytes(data: bytes, where: str = "the model") -> dict:
    _check_bytes(data[:8], len(data), where)
    Interpreter, runtime = _interpreter_class()
    it = _load(Interpreter, where, model_content=bytes(data))  # verifies the flatbuffer first
    layout = _flatbuffer_layout(data)
    nodes = _nodes(it)
    n_ops = layout["ops"] if layout else None
    status = _delegate_status(it, n_ops)
    n_ops = status.get("total_ops", len(nodes))
    taken = delegated_ops(nodes, n_ops) if status.get("active") is not None else [None] * n_ops
    ops: dict[tuple, int] = {}
    for node, t in zip(nodes[:n_ops], taken):
        ops[(node["op"], t)] = ops.get((node["op"], t), 0) + 1
    weights = layout["weights"] if layout else None
    return {
        "format": "tflite",
        "size_bytes": len(data),
        "parts": None if weights is None else {"weights": weights, "graph": len(data) - weights},
        "ops": [{"op": op, "count": n, "delegated": t} for (op, t), n in ops.items()],
        "delegated_ops": status.get("delegated_ops"),
        "total_ops": n_ops,
        "delegate": status,
        "runtime": runtime,
        "inputs": [_io_entry(it, d, layout, "inputs") for d in it.get_input_details()],
        "outputs": [_io_entry(it, d, layout, "outputs") for d in it.get_output_details()],
        "signatures": it.get_signature_list(),
        "tensors": [_tensor_entry(d, (layout or {}).get("int4", ())) for d in it.get_tensor_details()],
    }


def _io_entry(it, d: dict, layout: dict | None, kind: str) -> dict:
    entry = _describe(d, _quant(d))
    keys = (layout or {}).get("signature", {}).get(kind, {})
    entry["signature_name"] = keys.get(int(d["index"]))
    return entry


def _tensor_entry(d: dict, int4=()) -> dict:
    """`int4`: indices of the tensors the flatbuffer types INT4 (the interpreter reports them as int8)."""
    qp = d.get("quantization_parameters") or {}
    scales = [float(s) for s in np.asarray(qp.get("scales", [])).reshape(-1)]
    zps = [int(z) for z in np.asarray(qp.get("zero_points", [])).reshape(-1)]
    q = None
    if scales:
        q = {"scale": scales[0], "zero_point": zps[0] if zps else 0} if len(scales) == 1 else {
            "scale": scales, "zero_point": zps, "axis": int(qp.get("quantized_dimension", 0))}
    dtype = "int4" if int(d["index"]) in int4 else np.dtype(d["dtype"]).name
    return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": dtype, "quantization": q}


def _flatbuffer_layout(data: bytes) -> dict | None:
    """Op count, constant-buffer bytes and signature keys, read with the runtime's own schema.
    Called only after the interpreter has verified the buffer. None where no schema ships."""
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as fb
        except ImportError:
            return None
    model = fb.Model.GetRootAs(data, 0)
    weights = 0
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        weights += b.Size() if b.Offset() > 1 else b.DataLength()
    signature: dict = {"inputs": {}, "outputs": {}}
    if model.SignatureDefsLength() == 1:
        sig = model.SignatureDefs(0)
        signature["inputs"] = {sig.Inputs(i).TensorIndex(): sig.Inputs(i).Name().decode()
                               for i in range(sig.InputsLength())}
        signature["outputs"] = {sig.Outputs(i).TensorIndex(): sig.Outputs(i).Name().decode()
                                for i in range(sig.OutputsLength())}
    graph = model.Subgraphs(0)
    int4 = {i for i in range(graph.TensorsLength()) if graph.Tensors(i).Type() == fb.TensorType.INT4}
    return {"ops": graph.OperatorsLength(), "weights": weights, "signature": signature, "int4": int4}
