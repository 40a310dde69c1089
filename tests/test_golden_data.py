"""The data an export proves its artifacts on, and a graph the ONNX exporter's optimizer would change.

The planted log-energy net (tests/planted/log_eps_torch.py: log(x^2 + 1e-10), then a linear layer)
is finite on the digits images only because of its epsilon: the pixels that are exactly 0 give
log(1e-10). Random normal inputs are never exactly 0.

  golden vectors: with --calib and no recipe that calibrates (--quant fp32,fp16), the golden
  vectors are the user's data, not random normal inputs, and the manifest says so. On random
  inputs a .onnx that had lost its epsilon passed its smoke run and validate.
  torch -> .onnx: onnxscript's optimizer drops `+ 1e-10` as a no-op (its x+0 rule matches any
  scalar within 1e-8 of 0); edgeship exports that graph unoptimized, says why, and the artifact
  keeps the model's numbers on the digits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli

LOG_EPS = f"{Path(__file__).resolve().parent / 'planted' / 'log_eps_torch.py'}:build"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "b"
    # fp16 loses a little on this net (measured: cosine 0.9987 on the 20 digits, under fp16's 0.999
    # floor: the tiny log inputs sit near float16's smallest magnitudes): accepted in words
    r = CliRunner().invoke(cli, ["export", LOG_EPS, "--to", "onnx", "--quant", "fp32,fp16", "--calib",
                                 "digits:train", "--golden-samples", "20", "--floor", "fp16:cosine=0.995",
                                 "--out", str(out)])
    return out, r


def test_golden_vectors_are_the_calibration_data_when_no_recipe_calibrates(bundle):
    out, r = bundle
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["golden"]["data"].endswith("(calibration data)"), manifest["golden"]
    with np.load(out / "golden.npz") as g:
        x = g["input_0"]
    assert x.shape[0] == 20 and x.min() >= 0.0 and (x == 0).any()  # digits pixels, not normal noise


def test_an_epsilon_the_onnx_optimizer_would_drop_is_kept(bundle):
    out, r = bundle
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "would remove Add" in said and "1e-10" in said and "exported unoptimized" in said
    manifest = json.loads((out / MANIFEST).read_text())
    fp32 = next(a for a in manifest["artifacts"] if a["recipe"] == "fp32")
    assert "unoptimized" in fp32["route"] and fp32["smoke"]["status"] == "pass"
    import onnx

    ops = [n.op_type for n in onnx.load(str(out / fp32["path"])).graph.node]
    assert "Add" in ops  # the epsilon is still in the graph
    r = CliRunner().invoke(cli, ["validate", str(out / fp32["path"]), "--runs", "2", "--warmup", "1",
                                 "--min-cosine", "0.9999"])
    assert r.exit_code == 0, r.output  # on the digits, whose zero pixels need the epsilon
