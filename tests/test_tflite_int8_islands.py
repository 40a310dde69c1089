"""int8 .tflite from torch without float islands (convert/tflite_int8_annotations.py): MTCNN's
RNet (PReLU after every conv and after its Linear; the mtcnn wheel's trained weights) through
litert-torch. Read back with LiteRT's own interpreter: every op but the boundary DEQUANTIZEs and
SOFTMAX computes in int8, and the outputs stay close to torch's."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import torch

import mtcnn_nets

from edgeship.convert import tflite_int8_annotations as ann


def test_prelu_rewrite_keeps_values():
    net = mtcnn_nets.torch_net("rnet")
    x = torch.from_numpy(mtcnn_nets.example("rnet"))
    gm = torch.export.export(net, (x,)).module()
    assert ann.prelu_as_int8_ops(gm) == 4
    assert not [n for n in gm.graph.nodes if n.target == torch.ops.aten.prelu.default]
    with torch.no_grad():
        for a, b in zip(net(x), gm(x)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_rnet_int8_tflite_has_no_float_islands(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgeship.convert.base import ConvertOptions
    from edgeship.convert.torch_tflite import convert
    from edgeship.data import Dataset
    from edgeship.quantize.recipes import RECIPES
    from edgeship.sources import load_model

    factory = tmp_path / "rnet_factory.py"
    factory.write_text(f"import sys\nsys.path.insert(0, {str(Path(mtcnn_nets.__file__).parent)!r})\n"
                       "import mtcnn_nets, torch\n\ndef build():\n    return mtcnn_nets.torch_net('rnet'), "
                       "(torch.from_numpy(mtcnn_nets.example('rnet')),)\n")
    model = load_model(f"{factory}:build")
    net, x = model.obj, mtcnn_nets.example("rnet")
    calib = Dataset("crops", [np.concatenate([mtcnn_nets.example("rnet", seed=i) for i in range(32)])],
                    model.io.inputs)
    out = tmp_path / "rnet.int8.tflite"
    result = convert(model, RECIPES["int8"], calib, out, ConvertOptions())
    it = Interpreter(model_path=str(out))
    it.allocate_tensors()
    dtype = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    ops = collections.Counter((o["op_name"], dtype[o["outputs"][0]]) for o in it._get_ops_details())
    floats = {name for (name, dt), _ in ops.items() if dt == np.float32} - {"DEQUANTIZE", "DELEGATE"}
    assert floats <= {"SOFTMAX"}, ops  # no float CONV/FC/ADD/MUL/SUB/RELU: PReLU is int8 too
    assert ops[("CONV_2D", np.int8)] == 3 and ops[("FULLY_CONNECTED", np.int8)] == 3
    assert not any("MUL" in w or "SUB" in w or "RELU" in w for w in result.warnings), result.warnings
    with torch.no_grad():
        want = net(torch.from_numpy(x))[0].numpy()
    from edgeship.runtime.standalone.tflite import Runner

    got = Runner(out).run([x])
    box = next(g for g in got if g.shape == want.shape and not np.allclose(g.sum(), 1.0))
    assert np.abs(box - want).max() < 0.05 * max(1.0, np.abs(want).max())
