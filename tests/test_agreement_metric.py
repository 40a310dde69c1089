"""Top-1 agreement ("agree %") is a classification measure: it is reported for a 2-D [batch, classes]
output, and where labels are given, only for the output they label when they are class ids. A
box regression beside class ids, or a 2-D output whose labels are masks, gets no agreement (near
ties in non-class scores made it 77-86% at cosine 0.99995: alarming, and meaningless)."""

from __future__ import annotations

import numpy as np

from edgeship.metrics import compare


def _logits(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((n, classes)).astype(np.float32)
    return ref, ref + rng.normal(0, 0.3, ref.shape).astype(np.float32)


def test_classifier_without_labels_has_agreement():
    ref, out = _logits(50, 10, 0)
    result = compare([ref], [out], ["logits"])
    assert 0 < result["top1_agreement"] <= 100
    assert "top1_agreement" in result["outputs"]["logits"]


def test_only_the_labelled_output_has_agreement_when_labels_are_class_ids():
    ref, out = _logits(50, 10, 1)
    boxes, boxes_out = _logits(50, 4, 2)  # a box regression: 2-D, not classes
    labels = ref.argmax(1)
    result = compare([ref, boxes], [out, boxes_out], ["logits", "boxes"], labels)
    assert "top1_agreement" in result["outputs"]["logits"] and "accuracy" in result
    assert "top1_agreement" not in result["outputs"]["boxes"]
    assert result["outputs"]["boxes"]["cosine"] > 0.9  # the other measures stay


def test_no_agreement_when_labels_are_not_class_ids():
    ref, out = _logits(20, 16, 3)  # per-pixel scores of a 4x4 mask, flattened
    masks = (np.random.default_rng(4).random((20, 4, 4)) > 0.5).astype(np.float32)
    result = compare([ref], [out], ["mask_logits"], masks)
    assert "top1_agreement" not in result and "top1_agreement" not in result["outputs"]["mask_logits"]
    assert "accuracy" not in result and result["cosine"] > 0.9


def test_no_agreement_for_a_3d_output():
    ref = np.random.default_rng(5).standard_normal((8, 12, 30)).astype(np.float32)  # per-position logits
    result = compare([ref], [ref * 1.001], ["chars"])
    assert "top1_agreement" not in result
