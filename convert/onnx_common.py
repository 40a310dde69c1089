"""What the torch and Keras -> .onnx routes share: a float32 ModelProto in, the recipe applied with
onnxruntime's quantization tools, one self-contained file out.

  fp32          the exported graph as is
  fp16          float16 weights and compute (onnxruntime.transformers.float16), float32 I/O kept
                by Cast nodes at the boundary
  dynamic-int8  quantize_dynamic: per-channel int8 weights, activations quantized at run time
                (ConvInteger / MatMulInteger)
  int8          quantize_static, QDQ format: per-channel int8 weights in 7 bits (reduce_range),
                int8 activations with MinMax ranges from the calibration data (the same samples
                the other formats use); float inputs and outputs. reduce_range because
                onnxruntime's int8 kernels saturate on x86 CPUs without VNNI (AVX2's VPMADDUBSW
                sums pairs of 8-bit products into int16): on the digits CNN, run on this AVX2 host,
                full 8-bit weights gave 20.2 dB SNR with the kernels and 41.0 dB with the same QDQ
                graph run unfused; 7-bit weights gave 37.1 dB either way

Files are written with deterministic protobuf serialization and weights inline (no .onnx.data
beside them), so the same model and data give the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings as pywarnings
from pathlib import Path

from edgeship.console import track
from edgeship.convert import ROUTES, int4_weight
from edgeship.errors import ConversionError, InputError, UnsupportedError, error_line
from edgeship.quantize.calibration import ort_calibration

STEPS = {
    "fp32": "float32",
    "fp16": "float16 (float32 I/O)",
    "dynamic-int8": "quantize_dynamic (per-channel int8 weights)",
    "int8": "quantize_static QDQ (per-channel 7-bit weights, reduce_range; float I/O)",
    "int16x8": "quantize_static QDQ (int16 activations, per-channel int8 weights; float I/O)",
    "int4-weight": "MatMulNBitsQuantizer (4-bit weights in blocks of 32, int8 activations in the kernel)",
}


def check_recipe(recipe, calib, source: str) -> None:
    ROUTES[(source, "onnx")].require(recipe, calib)


def apply_recipe(proto, recipe, calib, out_path: Path, int8_io: bool, verbose: bool = False,
                 calibration: str | None = None) -> tuple[str, list[str]]:
    """Write `proto` (float32) quantized per `recipe` to out_path. Returns (route step, warnings)."""
    import onnx

    notes = []
    if int8_io:
        notes.append("int8 I/O is not available on .onnx: onnxruntime's QDQ artifacts keep float inputs and outputs"
                     if recipe.name == "int8" else
                     f"int8 I/O applies to the int8 recipe only; the {recipe.name} artifact keeps float I/O")
    with quiet(verbose), tempfile.TemporaryDirectory(prefix="edgeship-onnx-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        write(proto, fp32)
        try:
            if recipe.name == "fp32":
                result = proto
            elif recipe.name == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                result = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
            elif recipe.name == "dynamic-int8":
                result = _dynamic(proto, Path(tmp), onnx)
            elif recipe.name == "int4-weight":
                result, _ = int4_weight.onnx_matmul_nbits(proto)
            else:
                result = _static(fp32, calib, Path(tmp), onnx, calibration, int16=recipe.name == "int16x8")
        except (ConversionError, InputError, UnsupportedError):
            raise
        except Exception as e:
            raise ConversionError(f"onnxruntime {recipe.name} quantization failed: {error_line(e, with_type=True)}") from None
        write(result, out_path)
    trial_load(out_path)
    return STEPS[recipe.name], notes


def _dynamic(proto, tmp: Path, onnx):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]  # stale shapes from the exporter make the quantizer's shape inference fail
    src, dst = tmp / "bare.onnx", tmp / "dynamic.onnx"
    write(bare, src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return onnx.load(str(dst))


def _static(fp32: Path, calib, tmp: Path, onnx, calibration: str | None = None, int16: bool = False):
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
    if int16:  # int16 Q/DQ: onnxruntime's contrib ops (com.microsoft) below opset 21
        extra = {**extra, "UseQDQContribOps": True}
    quantize_static(str(fp32), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt16 if int16 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, reduce_range=not int16, extra_options=extra)
    return onnx.load(str(dst))


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
        raise ConversionError(f"onnxruntime cannot load the exported model: {error_line(e, with_type=True)}") from None


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
