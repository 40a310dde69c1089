"""A bias shared by several nodes (torch.onnx's GroupNorm decomposition shares one InstanceNormalization bias
across every GroupNorm) made onnxruntime's quantize_static write a model it cannot load: it duplicates the
bias per node and names the copy the old name plus a number, checked against the initializers only, so the
copy can take a node output's name (a U-Net's 'val_11' copy became 'val_117', a Sigmoid's output).
edgeship gives each such node its own bias first, under a name no tensor has."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from edgeship.convert.onnx_common import apply_recipe, own_biases
from edgeship.data import Dataset
from edgeship.model import TensorSpec
from edgeship.quantize.recipes import get_recipe


def _two_convs_sharing_a_bias():
    """x -> Conv(w1, b) -> 'b0' -> Sigmoid -> Conv(w2, b) -> y: quantize_static's first copy of 'b' is 'b0'."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3, "w2"),
             numpy_helper.from_array(np.array([0.1, -0.2, 0.3, 0.05], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b"], ["b0"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["b0"], ["r"], name="sigmoid"),
             helper.make_node("Conv", ["r", "w2", "b"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "shared_bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_each_node_gets_its_own_bias_under_a_fresh_name_and_the_numbers_stay():
    proto = _two_convs_sharing_a_bias()
    mine = own_biases(proto)
    biases = [n.input[2] for n in mine.graph.node if n.op_type == "Conv"]
    assert len(set(biases)) == 2 and "b" not in biases and "b0" not in biases
    assert [t.name for t in proto.graph.initializer].count("b") == 1  # the caller's proto is left as it was
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    onnx.checker.check_model(mine)
    a = onnxruntime.InferenceSession(mine.SerializeToString(), providers=["CPUExecutionProvider"])
    b = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(a.run(None, {"x": x})[0], b.run(None, {"x": x})[0])


def test_int8_of_a_graph_sharing_a_bias_loads_and_matches(tmp_path):
    proto = _two_convs_sharing_a_bias()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 2, 6, 6)).astype(np.float32)
    calib = Dataset("x", [x[:32]], [TensorSpec("x", (1, 2, 6, 6))])
    out = tmp_path / "shared.int8.onnx"
    apply_recipe(proto, get_recipe("int8"), calib, out, int8_io=False)  # loaded by its trial run, or raises
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(proto, str(fp32))
    for i in range(32, 40):
        got, want = _run(out, x[i : i + 1]).ravel(), _run(fp32, x[i : i + 1]).ravel()
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.99
