"""A converter that dies costs one artifact, not the export (issue 20: "one failure loses
everything"). edgeship runs calibrated Keras -> .tflite conversions in a child process
(convert/keras_tflite.py), so when that child dies the fp32 artifact of the same export is written and
proven, the int8 one is a failure line that names the crash, and export exits 1 with its bundle. Before the
child, the whole export died with exit 139 and wrote nothing.

TensorFlow's TFLiteConverter (2.21) itself died with SIGSEGV calibrating every Keras GRU tried for int8
(tests/planted/gru_keras.py, a real GRU trained on the digits), which made the crash here; the route now
unrolls recurrent layers for int8 and that model converts. The crash is now planted from outside in the
real converter child (SIGSEGV from a watcher thread, as tests/device_support.py does to the runners), not
mocked."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from edgeship.cli import cli


@pytest.fixture(scope="module")
def gru_keras(tmp_path_factory) -> str:
    from planted.gru_keras import train

    path = tmp_path_factory.mktemp("gru") / "gru_digits.keras"
    assert train(path) > 80
    return str(path)


def test_a_converter_crash_fails_its_artifact_and_keeps_the_others(gru_keras, tmp_path):
    from pathlib import Path

    from device_support import segfault_when_running

    out, sent = tmp_path / "b", []
    # the int8 conversion's child is the only one (no rewrite trials): it is the one that dies
    # the child runs sys.executable (.venv/bin/python3 under scripts/test, .venv/bin/python by hand)
    segfault_when_running(Path(sys.executable).name, Path("edgeship.convert.keras_tflite"), sent, settle=1.0,
                          within=1200)
    r = CliRunner().invoke(cli, ["export", gru_keras, "--to", "tflite", "--quant", "fp32,int8", "--calib",
                                 "digits:train", "--calib-samples", "32", "--eval", "digits:test", "--cle", "off",
                                 "--bias-correction", "off", "--out", str(out)])
    assert sent, "no converter child showed up to crash"
    assert r.exit_code == 1, r.output
    said = " ".join(r.output.split())
    assert "SIGSEGV" in said and "int8" in said and "Traceback" not in r.output, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    written = {a["recipe"]: a for a in manifest["artifacts"]}
    assert set(written) == {"fp32"} and (out / written["fp32"]["path"]).exists()
    assert written["fp32"]["smoke"]["status"] == "pass", written["fp32"]["smoke"]
    (failed,) = manifest["failed_artifacts"]
    assert failed["recipe"] == "int8" and failed["stage"] == "convert" and "SIGSEGV" in failed["error"], failed
