"""Task metrics on cases worked out by hand, ragged labels, and the metric registry's errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship import labels as labels_mod
from edgeship import task_metrics as tm
from edgeship.errors import InputError


def det(rows):
    """One sample's detections in the (N, K, 6) layout: x1, y1, x2, y2, score, class."""
    return np.asarray(rows, np.float64)


def test_map50_interpolated_by_hand():
    """One class, two objects; detections TP .9, FP .8, TP .7: precision 1 up to recall .5, then
    2/3 up to recall 1; 101-point AP = (51 x 1 + 50 x 2/3) / 101."""
    truths = [np.array([[0, 0, 0, 10, 10]]), np.array([[0, 20, 20, 30, 30]])]
    outputs = [np.stack([det([[0, 0, 10, 10, .9, 0], [50, 50, 60, 60, .8, 0], [0, 0, 0, 0, 0, 0]]),
                         det([[20, 20, 30, 30, .7, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])])]
    assert tm.resolve("map50").score(outputs, truths) == pytest.approx((51 + 50 * 2 / 3) / 101 * 100)


def test_map50_95_counts_the_thresholds_a_box_clears():
    """IoU 0.62 clears 0.50, 0.55 and 0.60 of the ten thresholds: 30%."""
    truths = [np.array([[1, 0, 0, 10, 10]])]
    outputs = [det([[[0, 0, 10, 6.2, .9, 1]]])]
    assert tm.box_iou(outputs[0][0, :, :4], truths[0][:, 1:])[0, 0] == pytest.approx(0.62)
    assert tm.resolve("map50").score(outputs, truths) == pytest.approx(100)
    assert tm.resolve("map50_95").score(outputs, truths) == pytest.approx(30)


def test_map_classes_and_boxes_scores_layout_with_nms():
    """Two outputs (boxes, class scores): a duplicate box is suppressed, a wrong class is a miss."""
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10.5], [20, 20, 30, 30]]], np.float32)
    scores = np.array([[[.1, .9], [.2, .8], [.7, .3]]], np.float32)  # classes 1, 1 (dup), 0
    truths = [np.array([[1, 0, 0, 10, 10], [1, 20, 20, 30, 30]])]
    # class 1: one hit of two objects, the duplicate suppressed (else it would be a false positive)
    assert tm.resolve("map50").score([boxes, scores], truths) == pytest.approx(51 / 101 * 100)


def test_map_with_a_user_decode_function(tmp_path):
    (tmp_path / "decode.py").write_text(
        "import numpy as np\n"
        "def decode(outputs):\n"
        "    rows = outputs[0]\n"
        "    return [(r[:, :4], r[:, 4], r[:, 5]) for r in rows]\n")
    truths = [np.array([[0, 0, 0, 10, 10]])]
    outputs = [det([[[0, 0, 10, 10, .9, 0]]])]
    assert tm.resolve(f"map50@{tmp_path / 'decode.py'}:decode").score(outputs, truths) == pytest.approx(100)


def test_miou_argmax_and_threshold():
    truth = np.array([[[0, 1], [1, 1]]])  # background 1 px, foreground 3 px
    pred = np.array([[[0, 0], [1, 1]]])  # one foreground pixel missed
    logits = np.stack([pred == 0, pred == 1], 1).astype(np.float32)  # (1, 2, 2, 2)
    expected = (1 / 2 + 2 / 3) / 2 * 100  # background IoU 1/2, foreground 2/3
    assert tm.resolve("miou").score([logits], truth) == pytest.approx(expected)
    assert tm.resolve("miou").score([logits.transpose(0, 2, 3, 1)], truth) == pytest.approx(expected)  # NHWC
    assert tm.resolve("miou").score([pred * 0.8 + 0.1], truth) == pytest.approx(expected)  # one channel, > 0.5
    assert tm.resolve("miou@0.0").score([pred - 0.5], truth) == pytest.approx(expected)  # logits, > 0


def test_top5_psnr_cosine():
    logits = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], np.float32)
    assert tm.resolve("top1").score([logits], np.array([5, 5])) == 50
    assert tm.resolve("top5").score([logits], np.array([0, 4])) == 50  # class 0 is 6th best in row 0, 4 2nd in row 1
    target = np.zeros((2, 4), np.float32)
    target[:, 0] = 1.0  # peak 1
    noisy = target + 0.1  # MSE 0.01 -> 20 dB
    assert tm.resolve("psnr").score([noisy], target) == pytest.approx(20)
    assert tm.resolve("psnr").score([target], target) == tm.PSNR_CAP_DB
    assert tm.resolve("cosine").score([2 * target], target) == pytest.approx(1)


def test_psnr_without_labels_scores_against_the_reference():
    ref = [np.linspace(0, 1, 20).reshape(2, 10)]
    rec = tm.evaluate(tm.resolve("psnr"), [ref[0] + 0.01], ref, None)
    assert rec["against"] == "reference" and rec["drop"] is None and rec["value"] == pytest.approx(40, abs=0.1)
    with pytest.raises(InputError, match="needs labels"):
        tm.evaluate(tm.resolve("map50"), ref, ref, None)


def test_unknown_metric_suggests_and_parameters_are_checked():
    with pytest.raises(InputError, match="Did you mean 'map50'"):
        tm.resolve("mAP50")
    with pytest.raises(InputError, match="takes no parameter"):
        tm.resolve("top1@3")
    with pytest.raises(InputError, match="must be a number"):
        tm.resolve("miou@half")
    with pytest.raises(InputError, match="not found"):
        tm.resolve("nope.py:fn")


def test_user_metric_errors_are_one_line(tmp_path):
    (tmp_path / "m.py").write_text("def bad(outputs, labels):\n    return labels['x']\n"
                                   "def text(outputs, labels):\n    return 'high'\n")
    with pytest.raises(InputError, match="your metric .* failed: IndexError|your metric .* failed"):
        tm.resolve(f"{tmp_path / 'm.py'}:bad").score([np.zeros(2)], np.zeros(2))
    with pytest.raises(InputError, match="not a number"):
        tm.resolve(f"{tmp_path / 'm.py'}:text").score([np.zeros(2)], np.zeros(2))


def test_ragged_labels_pickle_free_round_trip(tmp_path):
    boxes = [np.array([[0, 1, 2, 3, 4]], np.float32), np.zeros((0, 5), np.float32),
             np.array([[1, 0, 0, 5, 5], [0, 2, 2, 4, 4]], np.float32)]
    arrays = labels_mod.to_npz(boxes)
    assert arrays["labels_index"].tolist() == [0, 1, 1, 3]
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), **arrays)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        back = labels_mod.from_npz({k: z[k] for k in z.files}, "d.npz")
    assert len(back) == 3 and back[1].shape == (0, 5)
    for a, b in zip(back, boxes):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="labels_index must be"):
        labels_mod.from_npz({"labels": arrays["labels"], "labels_index": np.array([0, 2, 1, 3])}, "bad.npz")


def test_labels_of_any_shape_through_load_data(tmp_path):
    from edgeship.data import load_data
    from edgeship.model import IOSpec, TensorSpec

    io = IOSpec([TensorSpec("x", (1, 2), "float32")])
    masks = np.zeros((4, 3, 3), np.int64)
    np.savez(tmp_path / "m.npz", x=np.zeros((4, 2), np.float32), labels=masks)
    assert load_data(str(tmp_path / "m.npz"), io).labels.shape == (4, 3, 3)
    (tmp_path / "gen.py").write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    for i in range(3):\n"
        "        yield np.zeros(2, np.float32), np.ones((i, 5), np.float32)\n")
    ds = load_data(f"{tmp_path / 'gen.py'}:samples", io)
    assert isinstance(ds.labels, list) and [len(a) for a in ds.labels] == [0, 1, 2]
    assert [len(a) for a in ds.take(2).labels] == [0, 1]
    assert len(ds.sha256) == 64
    with pytest.raises(InputError, match="3 labels for 4 samples"):
        np.savez(tmp_path / "short.npz", x=np.zeros((4, 2), np.float32), labels=np.arange(3))
        load_data(str(tmp_path / "short.npz"), io)
