"""What the torch and Keras -> .onnx routes share: a float32 ModelProto in, the recipe applied with
onnxruntime's quantization tools, one self-contained file out.

  fp32          the exported graph as is
  fp16          float16 weights and compute (onnxruntime.transformers.float16), float32 I/O kept
                by Cast nodes at the boundary
  dynamic-int8  quantize_dynamic: per-channel int8 weights, activations quantized at run time
                (ConvInteger / MatMulInteger)
  int8          quantize_static, QDQ format: per-channel int8 weights, int8 activations with
                MinMax ranges from the calibration data (the same samples the other formats use);
                float inputs and outputs. The weights' width is measured, not assumed: the graph
                is quantized with full 8-bit weights and with 7-bit ones (reduce_range), both run
                through onnxruntime's own kernels on the first calibration samples, and the one
                whose weakest output is nearer the float graph is kept (8-bit on a tie). 7-bit
                exists because onnxruntime's int8 kernels can saturate on x86 CPUs without VNNI
                (AVX2's VPMADDUBSW sums pairs of 8-bit products into int16): an earlier digits CNN
                gave 20.2 dB with 8-bit weights and 37.1 dB with 7-bit. On ImageNet-trained
                EfficientNet-Lite0 it is the other way: 15.3 dB with 8-bit, 8.5 dB with 7-bit.

Files are written with deterministic protobuf serialization and weights inline (no .onnx.data
beside them), so the same model and data give the same bytes.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import tempfile
import warnings as pywarnings
from pathlib import Path

from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight
from edgeship.convert.base import converter_message
from edgeship.errors import ConversionError, InputError, UnsupportedError
from edgeship.quantize.calibration import ORT_ENTROPY, ort_calibration, run_artifact, score

STEPS = {
    "fp32": "float32",
    "fp16": "float16 (float32 I/O)",
    "dynamic-int8": "quantize_dynamic (per-channel int8 weights)",
    "int8": "quantize_static QDQ (per-channel int8 weights; float I/O)",
    "int16x8": "quantize_static QDQ (int16 activations, per-channel int8 weights; float I/O)",
    "int4-weight": "MatMulNBitsQuantizer (4-bit weights in blocks of 32, int8 activations in the kernel)",
}


def check_recipe(recipe, calib, source: str) -> None:
    ROUTES[(source, "onnx")].require(recipe, calib)


def apply_recipe(proto, recipe, calib, out_path: Path, int8_io: bool, verbose: bool = False,
                 calibration: str | None = None, float_nodes: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """Write `proto` (float32) quantized per `recipe` to out_path, the int8 recipe leaving
    `float_nodes` (node names, see `layer_nodes`) in float. Returns (route step, warnings)."""
    import onnx

    notes = []
    step = STEPS[recipe.name]
    if int8_io:
        notes.append("int8 I/O is not available on .onnx: onnxruntime's QDQ artifacts keep float inputs and outputs"
                     if recipe.name == "int8" else
                     f"int8 I/O applies to the int8 recipe only; the {recipe.name} artifact keeps float I/O")
    with quiet(verbose), tempfile.TemporaryDirectory(prefix="edgeship-onnx-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        write(proto, fp32)
        try:
            if recipe.name in ("int8", "int16x8"):
                write(own_biases(fused(fp32, Path(tmp) / "fused.onnx", onnx)), fp32)
            if recipe.name == "fp32":
                result = proto
            elif recipe.name == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                result = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
            elif recipe.name == "dynamic-int8":
                result = _dynamic(proto, Path(tmp), onnx)
            elif recipe.name == "int4-weight":
                result, _ = int4_weight.onnx_matmul_nbits(proto)
            elif recipe.name == "int16x8":
                result = _static(fp32, calib, Path(tmp), onnx, calibration, int16=True)
            else:
                result, width = _static_int8(fp32, calib, Path(tmp), onnx, calibration, float_nodes)
                step = f"quantize_static QDQ (per-channel {width}; float I/O)"
        except (ConversionError, InputError, UnsupportedError):
            raise
        except Exception as e:
            raise ConversionError(f"onnxruntime {recipe.name} quantization failed: {converter_message(e)}") from None
        write(result, out_path)
    trial_load(out_path)
    return step, notes


def fused(src: Path, dst: Path, onnx):
    """onnxruntime's basic graph optimizations (constant folding, Conv+Mul, Conv+Add, Conv+BatchNorm,
    Pad+Conv fusions; standard ONNX ops only) applied to `src` before static quantization. tf2onnx
    leaves a Keras depthwise conv's BatchNorm as Mul and Add by per-channel constants: quantized as they
    stand, the conv's output gets one int8 scale for channels the Mul then scales by up to 100x apart
    (a Keras MobileNetV2 fell to cosine 0.68, SNR -0.2 dB). Folded, those scales are in the per-channel
    weights. The same fusions run when onnxruntime loads the float graph, so its numbers do not change."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    onnxruntime.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(dst))


BIAS_OPS = ("Conv", "ConvTranspose", "Gemm", "InstanceNormalization", "LayerNormalization", "BatchNormalization")


def own_biases(proto):
    """A copy of `proto` in which every node's bias (input 2 of the ops whose bias quantize_static turns
    into int32 at the node's own scale) is an initializer of its own. quantize_static duplicates a shared
    bias itself, naming the copy the original name plus a number ('val_11' -> 'val_117'), checked against
    the initializers only: the exporter's GroupNorm shares one InstanceNormalization bias across every
    GroupNorm, and the copy took the name of a Sigmoid's output, leaving a model onnxruntime refuses to
    load ("Incompatible dimensions"). Here the copies get names no tensor of the graph has."""
    import onnx

    initializers = {t.name: t for t in proto.graph.initializer}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    shared = [(i, node.input[2]) for i, node in enumerate(proto.graph.node)  # by position: names may be empty
              if node.op_type in BIAS_OPS and len(node.input) > 2 and uses.get(node.input[2], 0) > 1
              and node.input[2] in initializers]
    if not shared:
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    taken = set(initializers) | {o for n in proto.graph.node for o in n.output} | set(uses)
    taken |= {v.name for v in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info)}
    for i, bias in shared:
        name, k = f"{bias}__bias_of_node{i}", 0
        while name in taken:
            k += 1
            name = f"{bias}__bias_of_node{i}_{k}"
        taken.add(name)
        copy = out.graph.initializer.add()
        copy.CopyFrom(initializers[bias])
        copy.name = name
        out.graph.node[i].input[2] = name
    still_used = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
    keep = [t for t in out.graph.initializer if t.name in still_used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def _dynamic(proto, tmp: Path, onnx):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]  # stale shapes from the exporter make the quantizer's shape inference fail
    src, dst = tmp / "bare.onnx", tmp / "dynamic.onnx"
    write(bare, src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return onnx.load(str(dst))


WIDTH_SAMPLES = 32  # calibration samples the 8-bit and 7-bit weight graphs are compared on


def _static_int8(fp32: Path, calib, tmp: Path, onnx, calibration: str | None = None, float_nodes=()):
    """int8 with whichever weight width (8 bits, or 7 with reduce_range) measures nearer the float
    graph on this machine's onnxruntime kernels. Returns (ModelProto, what was measured)."""
    import itertools

    samples = list(itertools.islice(calib.samples(), WIDTH_SAMPLES))
    reference = run_artifact(fp32, "onnx", samples)
    tried = {}
    for bits in (8, 7):
        path = tmp / f"int8-w{bits}.onnx"
        write(_static(fp32, calib, tmp, onnx, calibration, reduce_range=bits == 7, float_nodes=float_nodes), path)
        tried[bits] = score(reference, run_artifact(path, "onnx", samples))["snr_db"]
    bits = max(tried, key=lambda b: (tried[b], b))
    width = (f"{bits}-bit weights: {tried[bits]:.1f} dB, {15 - bits}-bit: {tried[15 - bits]:.1f} dB on "
             f"{len(samples)} calibration samples")
    return onnx.load(str(tmp / f"int8-w{bits}.onnx")), width


def _static(fp32: Path, calib, tmp: Path, onnx, calibration: str | None = None, int16: bool = False,
            reduce_range: bool = False, float_nodes=()):
    """quantize_static in QDQ format. The activation ranges are computed once per fp32 graph and
    method and kept in onnxruntime's calibration cache under `tmp`, so the second weight width
    (and any later call on the same graph) quantizes without calibrating again."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    names = [i.name for i in onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self):
            samples = track(calib.samples(), total=len(calib), description="calibrating")
            self._it = (dict(zip(names, sample)) for sample in samples)

        def get_next(self):
            return next(self._it, None)

    dst = tmp / "int8.onnx"
    method, extra = ort_calibration(calibration)
    cache = tmp / f"ranges-{calibration or 'minmax'}.json"
    if calibration == "entropy" and not cache.exists():
        _entropy_ranges(fp32, Reader(), tmp, cache)
    if int16:  # int16 Q/DQ: onnxruntime's contrib ops (com.microsoft) below opset 21
        extra = {**extra, "UseQDQContribOps": True}
    quantize_static(str(fp32), str(dst), None if cache.exists() else Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt16 if int16 else QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=method, reduce_range=reduce_range and not int16,
                    extra_options=extra, nodes_to_exclude=list(float_nodes), calibration_cache_path=str(cache))
    return onnx.load(str(dst))


def _entropy_ranges(fp32: Path, reader, tmp: Path, cache: Path) -> None:
    """onnxruntime's Entropy calibrator with ORT_ENTROPY's histogram, written to the calibration
    cache that quantize_static then reads: quantize_static itself builds the calibrator with 128
    histogram bins (it passes no bin count on), which leaves the KL search one window, the whole
    range, so its "entropy" ranges were min-max's."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(fp32, None, augmented_model_path=str(tmp / "entropy-augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy, extra_options=dict(ORT_ENTROPY))
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def layer_nodes(proto, layers) -> tuple[str, ...]:
    """The nodes of `proto` that belong to the named torch layers (convert/layers.py: 'fragile',
    'features.3'). Two marks say where a node came from: the module scopes torch.onnx's dynamo
    exporter writes on it (metadata 'pkg.torch.onnx.name_scopes': ['', 'features', 'features.3',
    ..., op]), and the names of the weights it reads ('features.3.conv.weight'), which survive the
    exporter's conv + BatchNorm fusion (the fused Conv is scoped to the BatchNorm). A layer with no
    node is an error naming the layers the graph has."""
    weights = {t.name for t in proto.graph.initializer}
    wanted = set(layers)
    found: dict[str, list[str]] = {name: [] for name in wanted}
    known = set()
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        names = set(ast.literal_eval(scopes)[:-1]) if scopes else set()  # a list's repr; the last one is the op
        for w in (i for i in node.input if i in weights):
            parts = w.split(".")
            names.update(".".join(parts[:k]) for k in range(1, len(parts)))
        names.discard("")
        known.update(names)
        for name in wanted.intersection(names):
            found[name].append(node.name)
    missing = sorted(n for n, nodes in found.items() if not nodes)
    if missing:
        raise InputError(f"no node of the .onnx graph belongs to layer(s) {', '.join(missing)}",
                         hint=f"layers the graph has: {', '.join(sorted(known)[:12]) or 'none'}")
    return tuple(n for nodes in found.values() for n in nodes) + _unscoped_inside(proto, found, weights)


def _unscoped_inside(proto, found: dict, weights: set) -> tuple[str, ...]:
    """Nodes the optimizer made without a scope (a Split for torch.chunk) fed only by the kept layers' nodes:
    theirs too, else onnxruntime quantizes the tensor between two float ops (kws_cnn's DFT output)."""
    kept = {n for nodes in found.values() for n in nodes}
    producer = {o: node.name for node in proto.graph.node for o in node.output}
    added: list[str] = []
    for node in proto.graph.node:
        scoped = any(p.key == "pkg.torch.onnx.name_scopes" for p in node.metadata_props)
        feeds = [producer.get(i) for i in node.input if i and i not in weights]
        if not scoped and node.name not in kept and feeds and all(f in kept for f in feeds):
            kept.add(node.name)
            added.append(node.name)
    return tuple(added)


def write(proto, path: Path) -> None:
    """One file, weights inline, deterministic serialization (protobuf maps in sorted order)."""
    data = proto.SerializeToString(deterministic=True)
    if len(data) >= 2**31:
        raise UnsupportedError("the model is over 2 GB, ONNX's single-file limit; edgeship writes self-contained "
                               ".onnx files only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def trial_load(path: Path) -> None:
    """The artifact must load in onnxruntime, or the route failed."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        path.unlink(missing_ok=True)
        raise ConversionError(f"onnxruntime cannot load the exported model: {converter_message(str(e))}") from None


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("onnx", "onnxruntime", *names):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def quiet(verbose: bool = False):
    """The exporters and quantizers log warnings through the root logger and `warnings`."""
    if verbose:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
