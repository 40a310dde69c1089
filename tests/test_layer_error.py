"""Accuracy-aware mode's drop measures, the per-layer ranking, and the one-line errors of
`export --max-drop` and `diff`. Fast: no conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.errors import CheckFailed
from edgeship.quantize.accuracy_aware import drop, report_searches
from edgeship.quantize.layer_error import finish, keras_op_layers


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_top1_drop_is_points_lost_against_labels_or_changed_answers_without():
    ref = np.eye(4, dtype=np.float32)  # answers 0, 1, 2, 3
    out = ref[[0, 1, 2, 0]]  # the last answer changed
    assert drop("top1", ref, out, np.array([0, 1, 2, 3])) == pytest.approx(25.0)
    assert drop("top1", ref, out, np.array([0, 1, 2, 0])) == pytest.approx(-25.0)  # int8 got one right
    assert drop("top1", ref, out, None) == pytest.approx(25.0)


def test_cosine_and_snr_drops_are_percent_lost():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10)).astype(np.float32)
    assert drop("cosine", ref, ref, None) == pytest.approx(0.0, abs=1e-9)
    assert drop("snr", ref, ref, None) == 0.0
    noisy = ref + 0.1 * rng.standard_normal(ref.shape).astype(np.float32)  # noise power 1% of signal
    assert drop("snr", ref, noisy, None) == pytest.approx(1.0, rel=0.15)
    assert 0 < drop("cosine", ref, noisy, None) < 1.0


def test_ranking_puts_the_layer_that_loses_snr_first():
    rng = np.random.default_rng(0)
    x = [rng.standard_normal(64).astype(np.float32) for _ in range(8)]
    small = [a + 0.001 * rng.standard_normal(64).astype(np.float32) for a in x]  # ~60 dB
    large = [a + 1.0 * rng.standard_normal(64).astype(np.float32) for a in x]  # ~0 dB
    layers = [("a", "Conv2d"), ("b", "Fragile"), ("c", "Linear")]
    rows = finish(layers, {"a": x, "b": x, "c": x}, {"a": small, "b": large, "c": large})
    assert [r.name for r in rows][0] == "b"
    assert rows[0].added_db > 40 and rows[0].snr_db < 5
    assert next(r for r in rows if r.name == "c").added_db < 1  # inherits the error, adds little
    assert next(r for r in rows if r.name == "a").added_db < 5  # ~60 dB: as clean as the cap


def test_tflite_ops_map_to_keras_layers_by_name_and_the_output_op_to_the_last_layer():
    ops = [("CONV_2D", 1, "sequential_1/conv1_1/Relu;sequential_1/conv1_1/convolution"),
           ("CONV_2D", 2, "sequential_1/fragile_1/expand_1/Relu;sequential_1/fragile_1/expand_1/convolution"),
           ("CONV_2D", 3, "sequential_1/fragile_1/project_1/BiasAdd"),
           ("RESHAPE", 4, "sequential_1/flatten_1/Reshape"),
           ("FULLY_CONNECTED", 5, "StatefulPartitionedCall_1:0")]
    found = keras_op_layers(ops, ["conv1", "fragile", "fc"])
    assert found == {"conv1": [0], "fragile": [1, 2], "fc": [4]}


def test_a_missed_budget_is_exit_1_with_the_numbers(capsys):
    manifest = {"artifacts": [{"path": "m.int8.pte", "accuracy_aware": {
        "metric": "top1", "budget": 0.5, "met": False, "drop_before": 12.0, "drop_after": 3.0,
        "kept_float": ["a", "b"], "iterations": 3, "size_cost_bytes": 100, "latency_cost_ms": 0.01}}]}
    with pytest.raises(CheckFailed) as e:
        report_searches(manifest, "bundles/m")
    assert e.value.exit_code == 1
    assert "3.000" in e.value.message and "a, b" in e.value.message and "bundles/m" in e.value.message


def test_diff_missing_artifact_is_one_line_exit_2(tmp_path):
    r = run_cli("diff", tmp_path / "nope.tflite")
    assert r.exit_code == 2
    assert "not found" in r.output and "Traceback" not in r.output


def test_diff_refuses_non_artifacts(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    r = run_cli("diff", f)
    assert r.exit_code == 2 and "not a .tflite, .pte or .onnx artifact" in r.output
    f = tmp_path / "model.onnx"  # a format diff reads, outside a bundle: it needs the source
    f.write_bytes(b"x")
    r = run_cli("diff", f)
    assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 3


def test_diff_outside_a_bundle_needs_the_source(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"TFL3" * 8)
    r = run_cli("diff", f)
    assert r.exit_code == 2 and "--source" in r.output


def test_max_drop_needs_eval_data_and_a_known_metric(tmp_path):
    source = f"{Path(__file__).resolve().parents[1] / 'examples' / 'torch_digits.py'}:build"
    r = run_cli("export", source, "--quant", "int8", "--calib", "digits:train", "--eval", "digits:test",
                "--max-drop", "1", "--metric", "top7", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "top7" in r.output, r.output  # refused before anything converts
    assert not (tmp_path / "b").exists()


def test_max_drop_refusals_come_before_any_conversion(tmp_path):
    factory = tmp_path / "tiny.py"  # an untrained model: loads in a moment, nothing to convert
    factory.write_text("import torch\n\ndef build():\n"
                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), "
                       "(torch.zeros(1, 1, 8, 8),)\n")
    source = f"{factory}:build"
    common = ["--quant", "int8", "--calib", "digits", "--max-drop", "1", "--out", tmp_path / "b"]
    r = run_cli("export", source, "--to", "pte", *common)
    assert r.exit_code == 2 and "--eval" in r.output and "Traceback" not in r.output
    r = run_cli("export", source, "--to", "pte", "--eval", "digits:test", "--quant", "fp32", *common[2:])
    assert r.exit_code == 2 and "no int8" in r.output
    assert not (tmp_path / "b").exists()


def test_routes_without_accuracy_aware_mode_are_refused():
    from edgeship.errors import UnsupportedError
    from edgeship.quantize.accuracy_aware import check_supported

    for framework, target in (("keras", "tflite"), ("keras", "pte")):
        with pytest.raises(UnsupportedError, match=f"not available on {framework} -> {target} from a SavedModel"):
            check_supported(framework, target, "savedmodel", "top1")
    for framework, target, kind in (("torch", "tflite", "torch-module"), ("torch", "pte", "torch-exported"),
                                    ("keras", "pte", "keras"), ("keras", "tflite", "keras"),
                                    ("keras", "onnx", "keras")):
        check_supported(framework, target, kind, "cosine")  # supported: no error
