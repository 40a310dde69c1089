"""Task metrics, the user's own metric and honest statuses, end to end on real data.

The models are trained in the test (tests/task_models.py): shapes drawn on crops of
scikit-learn's two sample photos (`sklearn.datasets.load_sample_images`), china.jpg for training
and calibration, flower.jpg for evaluation. A detector (4x4-grid one-stage net, boxes + class
scores, the built-in layout) is scored with map50 against ragged box labels; a segmenter (small
fully convolutional net, 2-class logits) with miou against its masks. Artifacts are real: ONNX
(onnxruntime) and ExecuTorch .pte from the real converters and quantizers.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeship.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
import task_models  # noqa: E402

from edgeship import task_metrics  # noqa: E402


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def results_of(path: Path) -> dict:
    return {a["artifact"]: a for a in json.loads(Path(path).read_text())["artifacts"]}


# -- the segmenter: miou ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("seg")
    model = task_models.train_segmenter()
    source = task_models.write_source(model, "segmenter", tmp)
    calib_x, _, calib_m = task_models.shapes(200, 0, 11, max_objects=1)
    eval_x, _, eval_m = task_models.shapes(120, 1, 12, max_objects=1)
    calib = task_models.save_npz(tmp / "calib.npz", calib_x, calib_m)
    evaluation = task_models.save_npz(tmp / "eval.npz", eval_x, eval_m)
    with torch.no_grad():
        float_logits = model(torch.from_numpy(eval_x)).numpy()
    out = tmp / "bundle"
    r = run_cli("-q", "export", source, "--to", "onnx", "--quant", "fp32,int8", "--calib", calib, "--eval",
                evaluation, "--golden-samples", "120", "--out", out)
    assert r.exit_code == 0, r.output + r.stderr
    return {"tmp": tmp, "bundle": out, "source": source, "eval": evaluation, "masks": eval_m,
            "float_logits": float_logits, "model": model}


def test_segmenter_miou_per_artifact(segmenter):
    """miou of every artifact against the masks, beside the tensor metrics; the float reference's
    miou is the float torch model's own, recomputed here."""
    js = segmenter["tmp"] / "miou.json"
    r = run_cli("validate", segmenter["bundle"], "--metric", "miou", "--metric-drop", "5", "--runs", "3",
                "--json", js)
    assert r.exit_code == 0, r.output
    assert "miou %" in r.output
    expected = task_metrics.mean_iou([segmenter["float_logits"]], segmenter["masks"], [])
    assert expected > 80  # the segmenter learnt its task
    for name, a in results_of(js).items():
        t = a["accuracy"]["task"]
        assert t["metric"] == "miou" and t["against"] == "labels" and t["unit"] == "%"
        assert t["reference"] == pytest.approx(expected, abs=1e-6)
        assert t["drop"] == pytest.approx(t["reference"] - t["value"])
        assert 0 <= t["value"] <= 100
        assert any(c["name"] == "miou drop" and c["passed"] for c in a["checks"])
        assert a["status"] == "pass"
    fp32 = results_of(js)["segmenter_source.fp32.onnx"]["accuracy"]["task"]
    assert abs(fp32["drop"]) < 0.5  # fp32 computes what torch computes


def test_miou_floor_fails_when_out_of_reach(segmenter):
    r = run_cli("validate", segmenter["bundle"], "--metric", "miou", "--min-metric", "99.99", "--runs", "3")
    assert r.exit_code == 1
    assert "FAIL miou" in r.output.replace("\n", " ") or "FAIL" in r.output


# -- honest statuses -------------------------------------------------------------------------


def test_artifact_outside_a_bundle_is_ran_not_pass(segmenter, tmp_path):
    loose = tmp_path / "third_party.int8.onnx"
    shutil.copy(segmenter["bundle"] / "segmenter_source.int8.onnx", loose)
    js = tmp_path / "ran.json"
    r = run_cli("validate", loose, "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output  # ran is not a failure ...
    assert "ran, accuracy not checked" in r.output  # ... and the table says what it is
    assert "no reference and no labels" in r.output
    rec = results_of(js)["third_party.int8.onnx"]
    assert rec["status"] == "ran" and rec["latency"]["p50_ms"] > 0 and rec["size_bytes"] > 0
    assert not rec.get("accuracy")


def test_check_never_counts_ran_as_passed(segmenter, tmp_path):
    """A ran record (real, from validate) goes through the check's gates: every accuracy gate is
    not measured, so the check fails, whatever the latency and size gates say."""
    from edgeship.config import parse_project
    from edgeship.gates.budgets import evaluate
    from edgeship.reports.schema import summarize
    from edgeship.validation import ValidateRequest, validate

    loose = tmp_path / "a.int8.onnx"
    shutil.copy(segmenter["bundle"] / "segmenter_source.int8.onnx", loose)
    results, _ = validate(ValidateRequest(loose, runs=3, warmup=1))
    assert results[0]["status"] == "ran"
    cfg = parse_project({"model": {"source": "x.py:build"}, "targets": [{"format": "onnx", "recipe": "int8"}],
                         "gates": {"accuracy": {"metric": "miou", "min_metric": 50}, "size": {"max_kb": 10000}}},
                        tmp_path / "edgeship.toml")
    gates = evaluate(cfg.project, [{**results[0], "target": "onnx:int8"}])
    accuracy = [g for g in gates if g["gate"].startswith("accuracy.")]
    assert accuracy and all(g["status"] == "not_measured" for g in accuracy)
    assert any("accuracy not checked" in g["detail"] for g in accuracy)
    assert any(g["gate"] == "size" and g["status"] == "pass" for g in gates)
    s = summarize(gates)
    assert s["not_measured"] == len(accuracy) >= 2 and s["failing"]  # cosine drop and the miou floor


def test_reference_between_two_artifacts(segmenter, tmp_path):
    """A loose int8 artifact against a loose fp32 one: the fp32 one runs on the same inputs, and
    the int8 one is checked against its outputs (and against --data's labels)."""
    a, b = tmp_path / "shipped.int8.onnx", tmp_path / "float.fp32.onnx"
    shutil.copy(segmenter["bundle"] / "segmenter_source.int8.onnx", a)
    shutil.copy(segmenter["bundle"] / "segmenter_source.fp32.onnx", b)
    js = tmp_path / "ref.json"
    r = run_cli("validate", a, "--reference", b, "--data", segmenter["eval"], "--metric", "miou", "--runs", "3",
                "--json", js)
    assert r.exit_code == 0, r.output
    rec = results_of(js)["shipped.int8.onnx"]
    assert rec["status"] == "pass"
    assert json.loads(js.read_text())["context"]["reference"].startswith("float.fp32.onnx")
    acc = rec["accuracy"]
    assert 0.98 <= acc["cosine"] <= 1.0 and acc["snr_db"] > 10
    assert any(c["name"] == "cosine" for c in rec["checks"])
    # the reference's miou is the fp32 artifact's own: the float torch model's within rounding
    expected = task_metrics.mean_iou([segmenter["float_logits"]], segmenter["masks"], [])
    assert acc["task"]["reference"] == pytest.approx(expected, abs=0.5)
    # the same artifact against itself is bit-exact
    r = run_cli("validate", a, "--reference", a, "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output
    assert results_of(js)["shipped.int8.onnx"]["accuracy"]["max_abs_error"] == 0.0


def test_reference_a_bundle(segmenter, tmp_path):
    a = tmp_path / "shipped.onnx"
    shutil.copy(segmenter["bundle"] / "segmenter_source.int8.onnx", a)
    js = tmp_path / "b.json"
    r = run_cli("validate", a, "--reference", segmenter["bundle"], "--metric", "miou", "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output
    rec = results_of(js)["shipped.onnx"]
    assert rec["status"] == "pass" and rec["accuracy"]["task"]["against"] == "labels"
    r = run_cli("validate", a, "--reference", tmp_path / "nope.onnx")
    assert r.exit_code == 2 and "--reference not found" in r.output


# -- the user's own metric -------------------------------------------------------------------

DICE = '''"""The user's own metric: Dice of the foreground (class 1) over all samples, percent."""
import numpy as np


def dice(outputs, labels):
    pred = np.asarray(outputs[0]).argmax(1) == 1
    truth = np.asarray(labels) == 1
    return 200.0 * np.logical_and(pred, truth).sum() / (pred.sum() + truth.sum())
'''


def _dice(logits, masks) -> float:
    pred, truth = logits.argmax(1) == 1, masks == 1
    return 200.0 * np.logical_and(pred, truth).sum() / (pred.sum() + truth.sum())


@pytest.fixture(scope="module")
def dice_metric(segmenter):
    path = segmenter["tmp"] / "my_metrics.py"
    path.write_text(DICE)
    return path


def test_user_metric_through_validate(segmenter, dice_metric, tmp_path):
    js = tmp_path / "dice.json"
    spec = f"{dice_metric}:dice"
    r = run_cli("validate", segmenter["bundle"], "--metric", spec, "--metric-drop", "5", "--min-metric", "50",
                "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output
    assert "dice" in r.output  # named in the table's column
    expected = _dice(segmenter["float_logits"], segmenter["masks"])
    for a in results_of(js).values():
        t = a["accuracy"]["task"]
        assert t["metric"] == spec and t["user"] is True
        assert t["reference"] == pytest.approx(expected, abs=1e-6)
        assert {c["name"] for c in a["checks"]} >= {f"{spec} drop", spec}
    # a floor the artifacts cannot reach fails, exit 1
    r = run_cli("validate", segmenter["bundle"], "--metric", spec, "--min-metric", "100.5", "--runs", "3")
    assert r.exit_code == 1, r.output
    # a typo in the function name: one line, exit 2
    r = run_cli("validate", segmenter["bundle"], "--metric", f"{dice_metric}:dise")
    assert r.exit_code == 2 and "Did you mean 'dice'" in r.output


def test_user_metric_through_check(segmenter, dice_metric, tmp_path):
    """[gates.accuracy] metric = "my_metrics.py:dice" with its own budget and floor; every report
    names it."""
    import shutil as sh

    sh.copy(dice_metric, tmp_path / "my_metrics.py")
    sh.copy(segmenter["tmp"] / "calib.npz", tmp_path / "calib.npz")
    sh.copy(segmenter["eval"], tmp_path / "eval.npz")
    (tmp_path / "edgeship.toml").write_text(f'''
targets = [{{format = "onnx", recipe = "int8"}}]
out = "bundle"
[model]
source = "{segmenter['source']}"
[data]
calib = "calib.npz"
eval = "eval.npz"
golden_samples = 120
[measure]
runs = 5
warmup = 1
[gates.accuracy]
metric = "my_metrics.py:dice"
metric_drop = 5.0
min_metric = 50.0
''')
    r = run_cli("-q", "check", tmp_path / "edgeship.toml")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "bundle-report" / "report.json").read_text())
    gates = {g["gate"]: g for g in rep["gates"]}
    assert gates["accuracy.metric_drop"]["status"] == "pass" and gates["accuracy.min_metric"]["status"] == "pass"
    assert gates["accuracy.min_metric"]["metric"].endswith("my_metrics.py:dice")
    assert gates["accuracy.min_metric"]["value"] > 50
    md = (tmp_path / "bundle-report" / "report.md").read_text()
    html = (tmp_path / "bundle-report" / "report.html").read_text()
    junit = (tmp_path / "bundle-report" / "junit.xml").read_text()
    for text in (md, html, junit):
        assert "my_metrics.py:dice" in text
    assert "Task metric, size and latency" in html
    # the same project with a floor out of reach fails the check
    toml = (tmp_path / "edgeship.toml").read_text().replace("min_metric = 50.0", "min_metric = 100.5")
    (tmp_path / "edgeship.toml").write_text(toml)
    r = run_cli("-q", "check", tmp_path / "edgeship.toml", "--skip-export")
    assert r.exit_code == 1
    assert "accuracy.min_metric" in r.output


def test_user_metric_drives_max_drop(segmenter, dice_metric, tmp_path):
    """Accuracy-aware int8 measures the drop with the user's metric on all outputs."""
    out = tmp_path / "aa"
    r = run_cli("-q", "export", segmenter["source"], "--to", "pte", "--quant", "int8", "--calib",
                segmenter["tmp"] / "calib.npz", "--eval", segmenter["eval"], "--golden-samples", "120",
                "--max-drop", "3", "--metric", f"{dice_metric}:dice", "--out", out)
    assert r.exit_code in (0, 1), r.output
    manifest = json.loads((out / "manifest.json").read_text())
    aa = manifest["artifacts"][0]["accuracy_aware"]
    assert aa["metric"] == f"{dice_metric}:dice"
    assert aa["met"] == (aa["drop_after"] <= 3 + 1e-9) and (r.exit_code == 0) == aa["met"]
    # the recorded drop is the dice drop validate measures on the same golden vectors
    js = tmp_path / "v.json"
    run_cli("validate", out, "--metric", f"{dice_metric}:dice", "--runs", "3", "--json", js)
    task = next(iter(results_of(js).values()))["accuracy"]["task"]
    assert task["drop"] == pytest.approx(aa["drop_after"], abs=1e-3)  # the manifest rounds it


# -- the detector: map50 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("det")
    model = task_models.train_detector()
    source = task_models.write_source(model, "detector", tmp)
    calib_x, calib_b, _ = task_models.shapes(200, 0, 21)
    eval_x, eval_b, _ = task_models.shapes(150, 1, 22)
    calib = task_models.save_npz(tmp / "calib.npz", calib_x, calib_b)
    evaluation = task_models.save_npz(tmp / "eval.npz", eval_x, eval_b)
    with torch.no_grad():
        float_outputs = [o.numpy() for o in model(torch.from_numpy(eval_x))]
    out = tmp / "bundle"
    r = run_cli("-q", "export", source, "--to", "onnx,pte", "--quant", "fp32,int8", "--calib", calib, "--eval",
                evaluation, "--golden-samples", "150", "--out", out)
    assert r.exit_code == 0, r.output + r.stderr
    return {"tmp": tmp, "bundle": out, "eval": evaluation, "boxes": eval_b, "float_outputs": float_outputs}


def test_ragged_box_labels_round_trip_pickle_free(detector):
    with np.load(detector["eval"], allow_pickle=False) as z:
        assert z["labels"].shape[1] == 5 and len(z["labels_index"]) == len(detector["boxes"]) + 1
    from edgeship.bundle import read_bundle

    golden = read_bundle(detector["bundle"]).golden()
    assert isinstance(golden.labels, list) and len(golden.labels) == 150
    for got, want in zip(golden.labels, detector["boxes"]):
        np.testing.assert_array_equal(got, want)


def test_detector_int8_artifacts_scored_with_map50(detector):
    js = detector["tmp"] / "map.json"
    r = run_cli("validate", detector["bundle"], "--metric", "map50", "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output
    assert "map50 %" in r.output
    assert "accuracy per output" in r.output  # boxes and scores, each with its own metrics
    expected = task_metrics.resolve("map50").score(detector["float_outputs"], detector["boxes"])
    assert expected > 40  # the detector learnt its task
    res = results_of(js)
    int8 = [a for name, a in res.items() if ".int8." in name]
    assert len(int8) == 2
    for a in res.values():
        t = a["accuracy"]["task"]
        assert t["metric"] == "map50" and t["reference"] == pytest.approx(expected, abs=1e-6)
        assert len(a["accuracy"]["outputs"]) == 2
    for a in int8:
        t = a["accuracy"]["task"]
        assert 0 < t["value"] <= 100
        assert t["drop"] == pytest.approx(t["reference"] - t["value"])
    r = run_cli("validate", detector["bundle"], "--metric", "map50_95", "--runs", "3", "--json", js)
    assert r.exit_code == 0, r.output
    for a in results_of(js).values():
        assert a["accuracy"]["task"]["value"] <= res[a["artifact"]]["accuracy"]["task"]["value"] + 1e-9


def test_labels_only_for_an_artifact_outside_a_bundle(segmenter, tmp_path):
    """--data with labels and no reference: the task metric against the labels is checked (a
    floor), the tensor metrics are absent; without a floor it is ran; data without labels is an error."""
    loose = tmp_path / "third_party.onnx"
    shutil.copy(segmenter["bundle"] / "segmenter_source.int8.onnx", loose)
    js = tmp_path / "l.json"
    r = run_cli("validate", loose, "--data", segmenter["eval"], "--metric", "miou", "--min-metric", "50", "--runs", "3",
                "--json", js)
    assert r.exit_code == 0, r.output
    rec = results_of(js)["third_party.onnx"]
    assert rec["status"] == "pass" and rec["accuracy"]["task"]["value"] > 50
    assert rec["accuracy"]["task"]["reference"] is None and "cosine" not in rec["accuracy"]
    r = run_cli("validate", loose, "--data", segmenter["eval"], "--metric", "miou", "--runs", "3", "--json", js)
    assert r.exit_code == 0 and results_of(js)["third_party.onnx"]["status"] == "ran"
    assert "no limit given" in r.output
    np.savez(tmp_path / "nolabels.npz", x=np.load(segmenter["eval"])["x"])
    r = run_cli("validate", loose, "--data", tmp_path / "nolabels.npz")
    assert r.exit_code == 2 and "has no labels" in r.output
