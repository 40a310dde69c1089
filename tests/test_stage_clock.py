"""The export clock (edgeship/stage_clock.py): stages summed in a fixed order, what no stage counted
shown as 'other', and the one line export prints. An export's own `timings` are checked where an
export runs anyway (tests/test_bias_correction.py)."""

from __future__ import annotations

import time

from edgeship.stage_clock import ORDER, Clock


def test_stages_sum_in_order_and_the_rest_is_other(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    clock = Clock()
    for name, seconds in (("smoke runs", 2.0), ("conversions", 30.0), ("load", 1.0), ("conversions", 10.0)):
        with clock.stage(name):
            now[0] += seconds
    now[0] += 0.5  # counted by no stage
    record = clock.record()
    assert record == {"total": 43.5, "stages": {"load": 1.0, "conversions": 40.0, "smoke runs": 2.0, "other": 0.5}}
    assert list(record["stages"])[:3] == [s for s in ORDER if s in record["stages"]]
    assert Clock.line(record) == "43.5 s: conversions 40.0, smoke runs 2.0, load 1.0, other 0.5"


def test_a_stage_that_raises_is_still_counted_and_nothing_negative_is(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    clock = Clock()
    try:
        with clock.stage("load"):
            now[0] += 3.0
            raise ValueError("a bad source")
    except ValueError:
        pass
    clock.add("conversions", -1.0)  # a rewrite's time larger than its conversion's never goes negative
    assert clock.record()["stages"] == {"load": 3.0}


def test_formats_at_once_say_so_and_their_stages_may_pass_the_total(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    clock = Clock()
    clock.jobs = 2
    with clock.stage("load"):
        now[0] += 2.0
    now[0] += 10.0  # two formats converted beside each other, 9 s each, on their own clocks
    clock.add("conversions", 18.0)
    record = clock.record()
    assert record == {"total": 12.0, "stages": {"load": 2.0, "conversions": 18.0}, "jobs": 2}
    assert Clock.line(record) == "12.0 s (2 formats at once: their stages add up past the total): conversions 18.0, " \
                                 "load 2.0"
