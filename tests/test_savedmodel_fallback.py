"""SavedModels that TF's object loader rejects (edgeship/savedmodel_fallback.py).

The planted SavedModel is what Keras 2 wrote and TF 2.21 cannot read: its object graph holds an
optimizer slot variable. It is a real SavedModel (a tf.Module with a trained-looking weight and
a serving signature) whose object graph is given one `slot_variables` entry, as a Keras 2
optimizer's node has; TF 2.21's `tf.saved_model.load` then fails exactly as on basic-pitch's
model ("'_UserObject' object has no attribute 'add_slot'"). The zoo's basic_pitch is the real
one (tests/test_zoo.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5
B = np.array([0.25, -0.5, 1.0], np.float32)


def _planted(directory: Path) -> Path:
    """A SavedModel y = relu(x @ W + B) whose object graph has an optimizer slot variable."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    m = tf.Module()
    m.w, m.b = tf.Variable(W), tf.Variable(B)
    m.optimizer = tf.Module()  # stands where a Keras 2 optimizer stood: it holds the slot of w
    m.optimizer.w_momentum = tf.Variable(np.zeros_like(W))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(features):
        return {"scores": tf.nn.relu(tf.matmul(features, m.w) + m.b)}

    m.serve = serve
    tf.saved_model.save(m, str(directory), signatures={"serving_default": serve.get_concrete_function()})
    pb = directory / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    graph = saved.meta_graphs[0].object_graph_def
    root = {c.local_name: c.node_id for c in graph.nodes[0].children}
    opt = graph.nodes[root["optimizer"]]
    slot_id = next(c.node_id for c in opt.children if c.local_name == "w_momentum")
    slot = opt.slot_variables.add()
    slot.original_variable_node_id, slot.slot_name, slot.slot_variable_node_id = root["w"], "momentum", slot_id
    pb.write_bytes(saved.SerializeToString())
    return directory


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return _planted(tmp_path_factory.mktemp("planted") / "keras2_slots")


def test_object_loader_rejects_the_planted_model(planted):
    """The premise: TF's own loaders refuse it, with the words seen on basic-pitch's model."""
    import tensorflow as tf

    with pytest.raises(AttributeError, match="add_slot"):
        tf.saved_model.load(str(planted))


def test_fallback_exports_says_so_and_records_it(planted, tmp_path):
    out = tmp_path / "bundle"
    r = CliRunner().invoke(cli, ["export", str(planted), "--to", "tflite,onnx", "--quant", "fp32", "--out", str(out)])
    assert r.exit_code == 0, r.output + r.stderr
    said = [ln for ln in r.stderr.splitlines() if "object loader rejected" in ln]
    assert len(said) == 1 and "add_slot" in said[0] and "v1 loader" in said[0], r.stderr
    assert "Traceback" not in r.output + r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    loader = manifest["model"]["loader"]
    assert "tf.compat.v1" in loader["loader"] and "add_slot" in loader["object_loader_error"]
    assert [a["format"] for a in manifest["artifacts"]] == ["tflite", "onnx"]
    # the float reference ran the signature with the SavedModel's own weights
    with np.load(out / "golden.npz") as z:
        x, y = z["input_0"], z["output_0"]
    np.testing.assert_allclose(y.reshape(len(x), 3), np.maximum(x.reshape(len(x), 4) @ W + B, 0), atol=1e-5)
    v = CliRunner().invoke(cli, ["validate", str(out), "--runs", "1", "--warmup", "0"])
    assert v.exit_code == 0, v.output + v.stderr


def test_pte_of_such_a_model_is_refused_in_one_line(planted, tmp_path):
    r = CliRunner().invoke(cli, ["export", str(planted), "--to", "pte", "--quant", "fp32", "--out", str(tmp_path / "b")])
    assert r.exit_code != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "SavedModel -> pte is not supported" in errors[0]
    assert "tflite,onnx" in r.stderr and "Traceback" not in r.output + r.stderr
    assert not (tmp_path / "b").exists()


def test_neither_loader_reads_it_one_line_exit_2(planted, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(planted, broken)
    for f in (broken / "variables").glob("variables.data-*"):
        f.write_bytes(f.read_bytes()[:7])  # weights cut short: neither loader can restore them
    out = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", str(broken), "--to", "tflite", "--quant", "fp32", "--out", str(out)])
    assert r.exit_code == 2, r.output + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert "cannot load SavedModel" in errors[0] and "v1 loader could not read it either" in errors[0]
    assert "Traceback" not in r.output + r.stderr and "object loader rejected" not in r.stderr
    assert not out.exists()
