"""Runner for ExecuTorch programs (.pte), and `inspect_artifact` for what is inside one.

Standalone (standard library, numpy and executorch; no edgeship imports): the same file is pushed
to devices. ExecuTorch's Python runtime takes torch tensors and links libtorch, so a device needs a
CPU build of torch too.

Import cost: the runner imports `torch` and the runtime extension `executorch.extension.pybindings._C`
directly (about 1.5 s here), not `executorch.runtime` or `portable_lib` (5-8 s), which import the
whole exporter (`executorch.exir`) first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PTE_IDENTIFIER = b"ET12"  # flatbuffer file identifier, bytes 4..8 of every .pte
METHOD = "forward"
# ExecuTorch ScalarType codes -> numpy dtype names (runtime/core/portable_type/scalar_type.h)
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool"}
BACKEND_NAMES = {"XnnpackBackend": "XNNPACK"}


def _runtime():
    import torch  # the extension exchanges torch tensors and links libtorch: load it first
    from executorch.extension.pybindings import _C

    load_kernel_libraries(_C)
    return torch, _C


# Kernel libraries of the wheel that the Python extension does not link: without the quantized
# one, a program with portable int8 ops (quantize/dequantize out-variants) fails to load (0x14).
KERNEL_LIBRARIES = ("libexecutorch_kernels_quantized.so",)


def load_kernel_libraries(_C) -> list[str]:
    """Register the wheel's extra kernel libraries with the runtime the extension `_C` uses (they
    link the same libexecutorch.so, so their kernels land in its registry). Loading one twice is a
    no-op (dlopen returns the same handle). Returns the operator names they added."""
    import ctypes
    import os

    before = set(_C._get_operator_names())
    lib_dir = os.path.join(os.path.dirname(os.path.abspath(_C.__file__)), "..", "..", "lib")
    for name in KERNEL_LIBRARIES:
        path = os.path.normpath(os.path.join(lib_dir, name))
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return sorted(set(_C._get_operator_names()) - before)


def runtime_version() -> str:
    try:
        from executorch.version import __version__
    except ImportError:
        from importlib.metadata import version

        __version__ = version("executorch")
    return "executorch " + __version__.split("+")[0]


class Runner:
    def __init__(self, path, signature: dict | None = None, threads: int = 1):
        self.path = str(path)
        data = Path(path).read_bytes()
        check_pte_bytes(data, self.path)
        torch, _C = _runtime()
        self._torch = torch
        if threads and threads > 0 and _C._threadpool_get_thread_count() != threads:
            _C._unsafe_reset_threadpool(int(threads))  # the process-wide pool XNNPACK runs on
        self.threads = int(_C._threadpool_get_thread_count())
        self._shapes = None  # input shapes as tuples, filled on the first run
        self._program_bytes = data  # the runtime reads from this buffer without copying it: keep it alive
        try:
            self._program = _C._load_program_from_buffer(
                data, program_verification=_C.Verification.InternalConsistency
            )
            names = [self._program.get_method_name(i) for i in range(self._program.num_methods())]
            if METHOD not in names:
                raise ValueError(f"no '{METHOD}' method (methods: {', '.join(names)})")
            self._method = self._program.load_method(METHOD)  # initializes delegates: bad blobs fail here
            meta = self._method.method_meta()
            embedded = self._embedded_quantization(names)
            sig = signature or {}
            self.inputs = [
                _describe(meta.input_tensor_meta(i), i, "input", sig.get("inputs"), embedded)
                for i in range(meta.num_inputs())
            ]
            self.outputs = [
                _describe(meta.output_tensor_meta(i), i, "output", sig.get("outputs"), embedded)
                for i in range(meta.num_outputs())
            ]
        except Exception as e:  # RuntimeError/IndexError from the runtime's own checks
            raise ValueError(f"cannot load '{self.path}' as an ExecuTorch program: {_first_line(e)}") from None
        self.runtime = runtime_version()
        used = [b for b in _C._get_registered_backend_names() if b.encode() in data]
        xnnpack = "XnnpackBackend" in used
        self.delegate = {
            "name": "XNNPACK",
            "active": xnnpack,
            "detail": (f"program delegates to {', '.join(used)}" if used else "no delegate: portable kernels only")
            + f"; {self.threads} threads",
        }

    def run(self, feeds: list) -> list[np.ndarray]:
        if len(feeds) != len(self.inputs):
            raise ValueError(f"the program takes {len(self.inputs)} inputs, got {len(feeds)}")
        if self._shapes is None:
            self._shapes = [tuple(spec["shape"]) for spec in self.inputs]
        tensors = []
        for x, spec, shape in zip(feeds, self.inputs, self._shapes):
            if type(x) is not np.ndarray:
                x = np.asarray(x)
            if x.shape != shape:
                raise ValueError(f"input '{spec['name']}' has shape {list(spec['shape'])}, got {list(x.shape)}")
            x = to_stored(x, spec)
            # the method reads its inputs during the call only: a contiguous view is enough
            tensors.append(self._torch.from_numpy(np.ascontiguousarray(x)))
        results = self._method.call(tensors)
        return [from_stored(t.numpy(), spec) for t, spec in zip(results, self.outputs)]

    def _embedded_quantization(self, names: list[str]) -> dict:
        """Scale/zero point the converter stored as constant methods ('forward_input0_scale', ...)."""
        found = {}
        for name in names:
            if name.startswith(f"{METHOD}_") and name.endswith("_scale"):
                key = name[len(METHOD) + 1 : -len("_scale")]  # e.g. "input0"
                zp_name = f"{METHOD}_{key}_zp"
                scale = self._program.load_method(name).call([])[0]
                zero_point = self._program.load_method(zp_name).call([])[0] if zp_name in names else 0
                found[key] = {"scale": float(scale), "zero_point": int(zero_point)}
        return found


def check_pte_bytes(data: bytes, where: str) -> None:
    """Cheap checks before handing bytes to the runtime (ValueError, never a crash)."""
    if len(data) < 8 or data[4:8] != PTE_IDENTIFIER:
        raise ValueError(
            f"'{where}' is not an ExecuTorch program: expected identifier {PTE_IDENTIFIER!r} at byte 4, "
            f"got {data[4:8]!r} ({len(data)} bytes)"
        )
    header = _extended_header(data)
    if header is not None:
        program_size, segment_base, segment_size = header
        if program_size > len(data) or segment_base + segment_size > len(data):
            raise ValueError(
                f"'{where}' is truncated: its header says {segment_base + segment_size} bytes, "
                f"the file has {len(data)}"
            )


def _extended_header(data: bytes):
    """(program_size, segment_base_offset, segment_data_size) from the 'eh00' header, if any."""
    if len(data) < 40 or data[8:12] != b"eh00":
        return None
    field = lambda a, b: int.from_bytes(data[a:b], "little")  # noqa: E731
    return field(16, 24), field(24, 32), field(32, 40)


def _describe(info, i: int, side: str, sig_entries, embedded: dict) -> dict:
    code = int(info.dtype())
    dtype = SCALAR_TYPES.get(code, f"scalar_type_{code}")
    sig = sig_entries[i] if sig_entries and i < len(sig_entries) else {}
    quant = embedded.get(f"{side}{i}") or sig.get("quantization")
    if dtype not in ("int8", "uint8", "int16"):
        quant = None
    return {
        "name": sig.get("name") or f"{side}_{i}",
        "shape": [int(d) for d in info.sizes()],
        "dtype": dtype,
        "quantization": quant,
    }


def to_stored(x: np.ndarray, spec: dict) -> np.ndarray:
    q = spec["quantization"]
    if q and x.dtype.kind == "f":
        info = np.iinfo(spec["dtype"])
        x = np.round(x.astype(np.float32) / q["scale"]) + q["zero_point"]
        return np.clip(x, info.min, info.max).astype(spec["dtype"])
    return x.astype(spec["dtype"], copy=False)


def from_stored(y: np.ndarray, spec: dict) -> np.ndarray:
    q = spec["quantization"]
    if q:
        return ((y.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)
    return y.astype(np.float32) if y.dtype.kind == "f" else y


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Inspection (uses ExecuTorch's own deserializer and flatc; heavier imports, host only)


def inspect_artifact(path) -> dict:
    """Sizes by part, ops (delegated or not), delegates and I/O of a .pte, without running it."""
    data = Path(path).read_bytes()
    check_pte_bytes(data, str(path))
    try:
        return _inspect(data)
    except Exception as e:  # the deserializer's own errors on a damaged file
        raise ValueError(f"cannot parse '{path}': {type(e).__name__}: {_first_line(e)}") from None


def _inspect(data: bytes) -> dict:
    from executorch.exir._serialize._flatbuffer_program import _flatbuffer_to_program
    from executorch.exir.schema import DataLocation, KernelCall

    header = _extended_header(data)
    program_size, segment_base = (header[0], header[1]) if header else (len(data), len(data))
    program = _flatbuffer_to_program(data[:program_size])
    segment = lambda i: data[segment_base + program.segments[i].offset:][: program.segments[i].size]  # noqa: E731

    plan = next((p for p in program.execution_plan if p.name == METHOD), program.execution_plan[0])
    delegates, ops, delegate_segments = [], {}, set()
    for d in plan.delegates:
        if d.processed.location == DataLocation.SEGMENT:
            blob = segment(d.processed.index)
            delegate_segments.add(d.processed.index)
        else:
            blob = program.backend_delegate_data[d.processed.index].data
        delegates.append({"backend": d.id, "size_bytes": len(blob)})
        for name in _delegate_ops(d.id, blob):
            _count(ops, name, True)
    for chain in plan.chains:
        for instr in chain.instructions:
            if isinstance(instr.instr_args, KernelCall):
                op = plan.operators[instr.instr_args.op_index]
                _count(ops, op.name + (f".{op.overload}" if op.overload else ""), False)
    named_segments = {n.segment_index for n in (program.named_data or [])}
    constant_segments = {program.constant_segment.segment_index} if program.constant_segment.offsets else set()
    seg_size = lambda idxs: sum(program.segments[i].size for i in idxs)  # noqa: E731
    parts = {
        "program": program_size,
        "delegate_blobs": seg_size(delegate_segments) + sum(len(b.data) for b in program.backend_delegate_data),
        "named_data": seg_size(named_segments - delegate_segments),
        "constant_data": seg_size(constant_segments) + sum(len(b.storage) for b in program.constant_buffer),
    }
    parts["headers_and_padding"] = len(data) - sum(parts.values())
    op_list = [{"op": k[0], "count": v, "delegated": k[1]} for k, v in sorted(ops.items(), key=lambda kv: -kv[1])]
    delegated = sum(o["count"] for o in op_list if o["delegated"])
    return {
        "format": "pte",
        "size_bytes": len(data),
        "parts": parts,
        "ops": op_list,
        "delegated_ops": delegated,
        "total_ops": sum(o["count"] for o in op_list),
        "delegates": delegates,
        "inputs": [_value_spec(plan.values[i].val) for i in plan.inputs],
        "outputs": [_value_spec(plan.values[i].val) for i in plan.outputs],
        "methods": [p.name for p in program.execution_plan],
    }


def _count(ops: dict, name: str, delegated: bool) -> None:
    ops[(name, delegated)] = ops.get((name, delegated), 0) + 1


def _value_spec(val) -> dict:
    sizes = getattr(val, "sizes", None)
    if sizes is None:
        return {"kind": type(val).__name__}
    code = int(val.scalar_type.value if hasattr(val.scalar_type, "value") else val.scalar_type)
    return {"shape": list(sizes), "dtype": SCALAR_TYPES.get(code, f"scalar_type_{code}")}


def _delegate_ops(backend: str, blob: bytes) -> list[str]:
    """Node types inside a delegate blob (XNNPACK: decoded with its flatbuffer schema)."""
    if backend != "XnnpackBackend":
        return [f"{backend}:<opaque>"]
    graph = _decode_xnnpack_graph(blob)
    if graph is None:
        return ["XnnpackBackend:<unreadable>"]
    return [n.get("xnode_union_type", "?") for n in graph.get("xnodes", [])]


def _decode_xnnpack_graph(blob: bytes) -> dict | None:
    import importlib.resources
    import json
    import os
    import re
    import tempfile

    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    if blob[4:8] != b"XH00":
        return None
    offset, size = int.from_bytes(blob[10:14], "little"), int.from_bytes(blob[14:18], "little")
    schema = importlib.resources.files("executorch.backends.xnnpack.serialization").joinpath("schema.fbs")
    with tempfile.TemporaryDirectory() as tmp, importlib.resources.as_file(schema) as schema_path:
        bin_path = os.path.join(tmp, "graph.bin")
        with open(bin_path, "wb") as f:
            f.write(blob[offset : offset + size])
        try:
            _flatc_decompile(tmp, str(schema_path), bin_path, ["--raw-binary"])
            text = Path(tmp, "graph.json").read_text()
        except Exception:
            return None
    text = re.sub(r"(:\s*)(-?)inf\b", lambda m: f"{m.group(1)}{m.group(2)}Infinity", text)
    text = re.sub(r"(:\s*)-?nan\b", lambda m: f"{m.group(1)}NaN", text)
    return json.loads(text)
