"""PyTorch -> .onnx with torch.onnx.export (dynamo) and onnxruntime's quantization tools: every
recipe converts, runs in the onnxruntime runner over the digits test split (NCHW, as the torch
model takes it) and stays close to the torch model."""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import pytest

from edgeship.convert import ConvertOptions
from edgeship.errors import InputError
from edgeship.quantize import get_recipe
from edgeship.runtime.standalone.onnx import Runner, inspect_artifact

from roundtrip import convert_to, cosine, run_all, top1

convert = partial(convert_to, "torch", "onnx")

RECIPES = ("fp32", "fp16", "dynamic-int8", "int8")


def ops(info: dict) -> dict[str, int]:
    return {o["op"]: o["count"] for o in info["ops"]}


@pytest.fixture(scope="module")
def reference(torch_digits):
    t = torch_digits.test
    return torch_digits.model.run(t.batch(0, len(t)))[0]


@pytest.fixture(scope="module")
def artifacts(torch_digits, tmp_path_factory):
    """Each recipe converted once: {recipe: (path, ConvertResult, logits over digits:test)}."""
    d = tmp_path_factory.mktemp("torch_onnx")
    calib = torch_digits.train.take(200)
    out = {}
    for recipe in RECIPES:
        path = d / f"digits.{recipe}.onnx"
        result = convert(torch_digits.model, recipe, path, calib)
        out[recipe] = (path, result, run_all(path, torch_digits.test))
    return out


def test_fp32_matches_torch_in_nchw(artifacts, reference):
    path, result, logits = artifacts["fp32"]
    runner = Runner(str(path))
    assert runner.inputs == [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32", "quantization": None}]
    assert runner.outputs[0]["name"] == "output" and runner.outputs[0]["shape"] == [1, 10]
    assert np.abs(logits - reference).max() < 1e-4
    assert cosine(logits, reference) > 0.9999
    assert result.route.startswith("torch.onnx.export (dynamo) -> float32")
    assert {"torch", "onnx", "onnxruntime", "onnxscript"} <= result.tools.keys()
    assert result.delegation is None and result.warnings == []
    assert not list(path.parent.glob("*.data"))  # weights inline: one self-contained file


def test_fp16_weights_float_io(artifacts, reference, torch_digits):
    path, _, logits = artifacts["fp16"]
    info = inspect_artifact(str(path))
    assert path.stat().st_size < 0.6 * artifacts["fp32"][0].stat().st_size
    assert sum(t["dtype"] == "float16" for t in info["tensors"]) >= 8
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    assert cosine(logits, reference) > 0.9999 and np.abs(logits - reference).max() < 0.05
    assert abs(top1(logits, torch_digits.test.labels) - torch_digits.float_accuracy) <= 0.5


def test_dynamic_int8_integer_kernels(artifacts, reference, torch_digits):
    path, _, logits = artifacts["dynamic-int8"]
    found = ops(inspect_artifact(str(path)))
    assert found["ConvInteger"] == 2 and found["MatMulInteger"] == 2 and found["DynamicQuantizeLinear"] == 4
    assert cosine(logits, reference) > 0.99
    assert abs(top1(logits, torch_digits.test.labels) - torch_digits.float_accuracy) <= 1.0


def _widest_weight(path) -> int:
    """The largest |q| of any int8 conv/gemm weight initializer in the file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return max(int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max()) for t in graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2)


def test_int8_qdq_per_channel_keeps_accuracy(artifacts, reference, torch_digits):
    path, result, logits = artifacts["int8"]
    info = inspect_artifact(str(path))
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    found = ops(info)
    assert found["QuantizeLinear"] >= 5 and found["DequantizeLinear"] >= 10
    per_channel = sorted(len(t["quantization"]["scale"]) for t in info["tensors"]
                         if t["dtype"] == "int8" and t["quantization"] and isinstance(t["quantization"]["scale"], list))
    assert 16 in per_channel and 32 in per_channel  # the two conv layers' filters
    assert path.stat().st_size < 0.4 * artifacts["fp32"][0].stat().st_size
    kept, kept_db, other, other_db = re.search(r"(\d)-bit weights: ([\d.-]+) dB, (\d)-bit: ([\d.-]+) dB",
                                               result.route).groups()
    assert {kept, other} == {"8", "7"} and float(kept_db) >= float(other_db)
    assert _widest_weight(path) == (127 if kept == "8" else 64)  # what the file holds, read with onnx itself
    assert cosine(logits, reference) > 0.98
    assert abs(top1(logits, torch_digits.test.labels) - torch_digits.float_accuracy) <= 1.0


def test_conversion_is_deterministic_and_int8_io_is_reported(torch_digits, artifacts, tmp_path):
    calib = torch_digits.train.take(200)
    for recipe in ("fp32", "int8"):
        again = tmp_path / f"again.{recipe}.onnx"
        result = convert(torch_digits.model, recipe, again, calib, int8_io=recipe == "int8")
        assert again.read_bytes() == artifacts[recipe][0].read_bytes(), recipe
    assert result.warnings == ["int8 I/O is not available on .onnx: onnxruntime's QDQ artifacts keep float inputs "
                               "and outputs"]


def test_exported_program_converts(torch_digits_pt2, tmp_path):
    model = torch_digits_pt2.model
    assert model.kind == "torch-exported"
    t = torch_digits_pt2.test
    reference = model.run(t.batch(0, len(t)))[0]
    for recipe in ("fp32", "int8"):
        path = tmp_path / f"pt2.{recipe}.onnx"
        convert(model, recipe, path, torch_digits_pt2.train.take(200))
        logits = run_all(path, t)
        if recipe == "fp32":
            assert np.abs(logits - reference).max() < 1e-4
        else:
            assert abs(top1(logits, t.labels) - torch_digits_pt2.float_accuracy) <= 1.0


def test_int8_without_calibration_is_a_clear_error(torch_digits, tmp_path):
    from edgeship.convert.torch_onnx import convert as torch_to_onnx

    with pytest.raises(InputError) as e:
        torch_to_onnx(torch_digits.model, get_recipe("int8"), None, tmp_path / "x.onnx", ConvertOptions())
    assert "needs calibration data" in e.value.message and "--calib" in e.value.hint
    assert not (tmp_path / "x.onnx").exists()
