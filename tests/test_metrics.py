import math

import numpy as np

from edgeship.metrics import compare, cosine, snr_db
from edgeship.runtime.standalone.timing import measure, percentile


def test_identical_outputs():
    a = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    m = compare([a], [a.copy()], ["logits"], labels=a.argmax(1))
    assert m["cosine"] == 1.0 and math.isinf(m["snr_db"]) and m["max_abs_error"] == 0.0
    assert m["top1_agreement"] == 100.0 and m["accuracy"] == 100.0 and m["accuracy_drop"] == 0.0


def test_noise_lowers_snr_by_the_right_amount():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 10))
    noisy = a + 0.1 * rng.standard_normal(a.shape)  # noise power 1% of signal power -> ~20 dB
    assert abs(snr_db(a, noisy) - 20.0) < 0.5
    assert 0.99 < cosine(a, noisy) < 1.0


def test_flipped_predictions_count_as_drop():
    ref = np.eye(10)[np.arange(10)]
    other = ref.copy()
    other[0] = np.eye(10)[5]
    m = compare([ref], [other], ["p"], labels=np.arange(10))
    assert m["top1_agreement"] == 90.0 and m["accuracy_drop"] == 10.0


def test_percentiles_and_measure():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 90) == 1.9
    calls = []
    r = measure(lambda x: calls.append(x), [1, 2], warmup=3, runs=10)
    assert len(calls) == 13 and r["runs"] == 10 and r["warmup"] == 3 and r["p50_ms"] >= 0
