"""Keeping a layer float must not cost accuracy on .tflite: a ReLU6 behind a float conv keeps its
own output range (convert/tflite_int8_annotations.py, CLAMPS).

EfficientNet-Lite0 with its stem conv kept float fell from 15.7 dB (all int8) to 5.1 dB: the
clamp's input was quantized with the float conv's raw range, litert-torch fused the clamp into
the float conv, and the clamped output was quantized with that raw range. The planted net
(tests/planted/clamp_torch.py, trained on digits) has a conv whose raw output spans about
[-100, 100] in front of its ReLU6, as EfficientNet's stem has."""

from __future__ import annotations

import pytest

from edgeship.convert import ConvertOptions, get_route
from edgeship.data import load_data
from edgeship.quantize import get_recipe
from edgeship.quantize.calibration import run_artifact, samples_of, score
from edgeship.sources import load_model

from conftest import REPO

PLANTED = f"{REPO / 'tests' / 'planted' / 'clamp_torch.py'}:build"


@pytest.mark.slow
def test_a_float_conv_before_relu6_keeps_the_int8_tflite_accurate(tmp_path):
    model = load_model(PLANTED)
    calib = load_data("digits:train", model.io).take(100)
    test = load_data("digits:test", model.io).take(100)
    reference = model.run(test.arrays)
    convert = get_route("torch", "tflite").load()
    got = {}
    for name, float_layers in (("int8", ()), ("conv1 float", ("conv1",))):
        path = tmp_path / f"{len(float_layers)}.tflite"
        convert(model, get_recipe("int8"), calib, path, ConvertOptions(calibration="minmax", float_layers=float_layers))
        got[name] = score(reference, run_artifact(path, "tflite", samples_of(test.arrays)))["snr_db"]
    # measured: all int8 24.7 dB; conv1 float 25.2 dB, and 1.4 dB with the clamp input quantized
    assert got["conv1 float"] > got["int8"] - 1.0, got
    assert got["conv1 float"] > 15, got
