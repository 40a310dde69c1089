"""int8 .pte keeps a ReLU6's output resolution when its conv's raw output spans far more than
[0, 6] (issue 13: EfficientNet-Lite0's .pte int8 was at 3.9 dB, 4.9 dB with bias correction, while
the .tflite with bias correction reached 16.2 dB; bench/pte_clamp_ab.py localises it). The net:
tests/planted/clamp_torch.py, trained on digits, with one dead and one saturated channel (raw
output about -100 / +100) that the float function ignores.

The route (convert/torch_pte.py) quantizes conv -> ReLU6 as one pattern observed after the clamp
(convert/xnnpack_quant_patterns.py). ExecuTorch's stock XNNPACKQuantizer observes the conv's raw
output and hands that range on to the clamp's output (shared qparams): the second test shows the
planted net is one on which that loses (measured: 1.4 dB on the host q/dq graph against 24 dB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeship.convert import ConvertOptions, get_route
from edgeship.convert.torch_common import exported_program
from edgeship.convert.torch_pte import pt2e_quantize
from edgeship.data import load_data
from edgeship.quantize import get_recipe
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.sources import load_model

from conftest import REPO

PLANTED = f"{REPO / 'tests' / 'planted' / 'clamp_torch.py'}:build"


@pytest.fixture(scope="module")
def planted():
    model = load_model(PLANTED)
    test = load_data("digits:test", model.io).take(100)
    return model, load_data("digits:train", model.io).take(200), test, model.run(test.arrays)


@pytest.mark.parametrize("calibration", [None, "percentile"])
def test_int8_pte_keeps_relu6_resolution(planted, tmp_path, calibration):
    model, calib, test, ref = planted
    path = tmp_path / "int8.pte"
    result = get_route("torch", "pte").load()(model, get_recipe("int8"), calib, path,
                                              ConvertOptions(calibration=calibration))
    s = score(ref, run_artifact(path, "pte", samples_of(test.arrays)))
    # measured: 23.9 dB, cosine 0.9976 (default / mse), 24.1 dB (percentile); the stock quantizer's
    # graph: 1.4 dB, cosine 0.60
    assert s["snr_db"] > 18 and s["cosine"] > 0.99, s
    assert result.delegation["delegated_ops"] == result.delegation["total_ops"], result.delegation


def test_stock_quantizer_loses_the_clamped_range(planted):
    """The planted property: observed before the clamp, the live channels keep a few levels."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    model, calib, test, ref = planted
    examples = (torch.zeros(1, 1, 8, 8),)
    stock = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    got = {}
    for way, quantizer in (("stock", stock), ("route", None)):
        gm = pt2e_quantize(exported_program(model.obj, examples), examples, calib, quantizer=quantizer)
        with torch.no_grad():
            out = np.concatenate([gm(torch.from_numpy(s[0])).numpy() for s in samples_of(test.arrays)])
        got[way] = score(ref, [out])["snr_db"]
    assert got["stock"] < 10 and got["route"] > got["stock"] + 10, got
