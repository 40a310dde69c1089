"""A converter's failure is one readable line: the converter's own words, no dumps, no paths of
folders that are gone by the time the message is read (convert.base.converter_message)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.convert.base import MESSAGE_LIMIT, converter_message
from edgeship.convert.onnx_common import trial_load, write
from edgeship.errors import ConversionError


def _erfc_model(ir_version: int = 8):
    """A one-node graph with Erfc, an op ONNX does not define (tf2onnx writes it for Keras' exact GELU)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Erfc", ["x"], ["y"], name="functional_1/dense_1/Gelu/Erfc")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    return model


def test_onnxruntime_load_failure_is_one_line_without_the_staging_path(tmp_path):
    staging = tmp_path / ".bundle.partial-4242"  # a bundle's staging folder, removed when export ends
    path = staging / "model.fp32.onnx"
    write(_erfc_model(), path)
    with pytest.raises(ConversionError) as info:
        trial_load(path)
    message = info.value.message
    assert "\n" not in message and len(message) <= MESSAGE_LIMIT + 60
    assert str(staging) not in message and "partial-" not in message and "..." not in message
    assert "No Op registered for Erfc" in message  # the converter's own words survive
    assert "node functional_1/dense_1/Gelu/Erfc (Erfc)" in message  # the dump, shortened to the node
    assert "[ONNXRuntimeError]" not in message and "tensor(float)" not in message


def test_a_cpp_location_and_signature_are_dropped(tmp_path):
    path = tmp_path / ".bundle.partial-4243" / "model.onnx"
    write(_erfc_model(ir_version=99), path)  # newer than this onnxruntime reads
    with pytest.raises(ConversionError) as info:
        trial_load(path)
    message = info.value.message
    assert "\n" not in message and "partial-" not in message and "..." not in message
    assert "onnxruntime::" not in message and ".cc:" not in message
    assert message.endswith("Unsupported model IR version: 99, max supported IR version: " +
                            message.rsplit(" ", 1)[-1])


def test_traceback_and_header_lines_are_dropped_temp_paths_become_file_names():
    text = ("Graph execution error:\n\nTraceback (most recent call last):\n  File \"/x/y.py\", line 3, in f\n"
            "    ^^^^\nInvalidArgumentError: cannot read /tmp/edgeship-onnx-ab12cd/fp32.onnx: truncated\n"
            "  more detail\n")
    assert converter_message(text) == "InvalidArgumentError: cannot read fp32.onnx: truncated"


def test_user_paths_stay_and_long_lines_are_cut_at_a_word():
    assert converter_message("cannot load '/home/me/model.keras'") == "cannot load '/home/me/model.keras'"
    line = converter_message(RuntimeError("word " * 200))
    assert line.startswith("RuntimeError: word word") and len(line) <= MESSAGE_LIMIT + 4 and line.endswith("...")
    assert converter_message(ConversionError("tf2onnx could not convert 'm'", hint="h")) == \
        "tf2onnx could not convert 'm'"
    assert np.isscalar(len(converter_message("")))


def test_torchs_graph_appendix_is_dropped_for_the_errors_own_words():
    """torch appends the failing node, its source and a tlparse hint to an error raised in a graph: the
    error line was 'ValueError: Use tlparse to see full graph. (https://...)'."""
    from edgeship.errors import error_line

    e = ValueError("Cannot view a tensor with shape torch.Size([1, 16, 2, 16, 32]) as (1, 32, 16, 1, 32)!\n\n"
                   "While executing %view_default_1 : [num_users=1] = call_function[target=aten.view.default]\n"
                   "Original traceback:\nFile \"keras_pte.py\", line 306, in forward\n    outputs = graph(x)\n"
                   "Use tlparse to see full graph. (https://github.com/pytorch/tlparse)")
    assert error_line(e, with_type=True) == ("ValueError: Cannot view a tensor with shape torch.Size([1, 16, 2, 16, 32]) "
                                             "as (1, 32, 16, 1, 32)!")
