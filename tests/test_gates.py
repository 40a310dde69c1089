"""Gates on records shaped like validate's: accuracy, latency budgets, size, memory, baselines,
and the statistics behind every latency verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.config import parse_project
from edgeship.gates.budgets import evaluate
from edgeship.gates.stats import mann_whitney_greater, median_shift_lower_bound


def project(**gates):
    data = {"model": {"source": "m.py:build"}, "targets": [{"format": "tflite", "recipe": "int8"},
                                                             {"format": "pte", "recipe": "fp32"}],
            "gates": gates}
    return parse_project(data, Path("/tmp/edgeship.toml")).project


def jitter(n=100, median=1.0, seed=0):
    """Latency-like samples: a lognormal body plus a few scheduler hiccups."""
    rng = np.random.default_rng(seed)
    s = median * rng.lognormal(0, 0.08, n)
    s[rng.random(n) < 0.05] *= rng.uniform(1.5, 4)
    return s.tolist()


def record(target="tflite:int8", device="local", acc=97.0, ref=97.3, agree=99.0, cos=0.995, samples=None,
           size=40_000, peak=300.0, runtime="ai-edge-litert 2.3.0", status="pass", **extra):
    fmt, recipe = target.split(":")
    samples = jitter() if samples is None else samples
    s = sorted(samples)
    lat = {"runs": len(s), "p50_ms": float(np.percentile(s, 50)), "p90_ms": float(np.percentile(s, 90)),
           "p99_ms": float(np.percentile(s, 99)), "mean_ms": float(np.mean(s)), "min_ms": s[0], "max_ms": s[-1],
           "samples_ms": samples}
    r = {"artifact": f"digits.{recipe}.{fmt}", "format": fmt, "recipe": recipe, "target": target, "device": device,
         "emulated": False, "size_bytes": size, "runtime": runtime, "threads": 1, "peak_rss_mb": peak,
         "latency": lat, "status": status,
         "accuracy": {"accuracy": acc, "reference_accuracy": ref, "accuracy_drop": ref - acc,
                      "top1_agreement": agree, "cosine": cos}}
    r.update(extra)
    return r


def by_gate(gates, target="tflite:int8"):
    return {g["gate"]: g for g in gates if g["target"] == target}


def baseline(*records):
    return {"path": "base.json", "created_unix": 0, "results": list(records)}


def test_accuracy_defaults_come_from_the_recipe_and_pass():
    g = by_gate(evaluate(project(), [record()]))
    assert g["accuracy.top1_drop"]["status"] == "pass" and g["accuracy.top1_drop"]["limit"] == 1.0
    assert g["accuracy.cosine_drop"]["limit"] == pytest.approx(0.02)  # int8: min cosine 0.98


def test_accuracy_drop_fails_named_per_metric():
    p = project(accuracy={"max_drop": {"top1": 0.5, "agreement": 0.5}, "min_top1": 98})
    g = by_gate(evaluate(p, [record(acc=95.0, ref=97.3, agree=97.0)]))
    assert g["accuracy.top1_drop"]["status"] == "fail" and g["accuracy.top1_drop"]["value"] == pytest.approx(2.3)
    assert g["accuracy.agreement_drop"]["status"] == "fail" and g["accuracy.agreement_drop"]["value"] == 3.0
    assert g["accuracy.min_top1"]["status"] == "fail" and g["accuracy.min_top1"]["op"] == ">="


def test_target_max_drop_overrides_gates():
    data = {"model": {"source": "m.py:build"}, "gates": {"accuracy": {"max_drop": {"top1": 0.1}}},
            "targets": [{"format": "tflite", "recipe": "int8", "max_drop": 3.0}]}
    p = parse_project(data, Path("/tmp/x.toml")).project
    g = by_gate(evaluate(p, [record(acc=95.0)]))
    assert g["accuracy.top1_drop"]["limit"] == 3.0 and g["accuracy.top1_drop"]["status"] == "pass"


def test_a_run_that_could_not_be_measured_is_never_a_pass():
    p = project(latency={"p50_ms": 5}, size={"max_kb": 100}, memory={"max_peak_mb": 1000},
                accuracy={"min_top1": 50})
    r = record(status="error", error="load: ValueError: bad flatbuffer", latency=None, peak_rss_mb=None,
               accuracy=None)
    g = by_gate(evaluate(p, [r]))
    for name in ("accuracy.top1_drop", "accuracy.cosine_drop", "accuracy.min_top1", "latency.p50", "memory"):
        assert g[name]["status"] == "not_measured", name
        assert "bad flatbuffer" in g[name]["detail"]
    assert g["size"]["status"] == "pass"  # the file itself is there


def test_latency_budget_uses_the_samples_and_per_device_budgets():
    p = project(latency={"p50_ms": 2.0, "p90_ms": 10.0, "device": {"ssh://pi@pi": {"p50_ms": 0.5}}})
    gates = evaluate(p, [record(), record(device="ssh://pi@pi")])
    local = {g["gate"]: g for g in gates if g["device"] == "local"}
    pi = {g["gate"]: g for g in gates if g["device"] == "ssh://pi@pi"}
    assert local["latency.p50"]["status"] == "pass" and local["latency.p50"]["confidence"] == 0.95
    assert pi["latency.p50"]["status"] == "fail" and pi["latency.p50"]["limit"] == 0.5
    assert pi["latency.p90"]["limit"] == 10.0  # falls back to the global budget


def test_latency_budget_without_samples_is_a_point_estimate():
    r = record()
    r["latency"] = {k: v for k, v in r["latency"].items() if k != "samples_ms"}
    g = by_gate(evaluate(project(latency={"p50_ms": 0.5}), [r]))
    assert g["latency.p50"]["status"] == "fail" and "point estimate" in g["latency.p50"]["detail"]


def test_size_and_memory_budgets():
    g = by_gate(evaluate(project(size={"max_kb": 30}, memory={"max_peak_mb": 200}), [record()]))
    assert g["size"]["status"] == "fail" and g["size"]["value"] == pytest.approx(40_000 / 1024)
    assert g["memory"]["status"] == "fail"


def test_same_distribution_never_regresses():
    """The no-flake property at the defaults: 300 pairs of runs of the same 'model'."""
    p = project()
    for seed in range(300):
        cur = record(samples=jitter(seed=2 * seed, median=0.8))
        base = record(samples=jitter(seed=2 * seed + 1, median=0.8))
        g = by_gate(evaluate(p, [cur], baseline(base)))
        assert g["regression.latency"]["status"] == "pass", g["regression.latency"]["detail"]


def test_a_slowdown_regresses_with_confidence():
    cur, base = jitter(seed=1, median=1.5), jitter(seed=2, median=1.0)
    g = by_gate(evaluate(project(), [record(samples=cur)], baseline(record(samples=base))))
    lat = g["regression.latency"]
    assert lat["status"] == "fail" and lat["confidence"] > 0.999 and lat["p_value"] < 1e-6
    # the stated shift is the samples' median shift over the baseline's p50, derived here with numpy
    b50 = float(np.percentile(base, 50))
    expected = (float(np.median(cur)) - float(np.median(base))) / b50
    assert f"({expected:+.0%})" in lat["detail"] and "at 99.9%" in lat["detail"], lat["detail"]
    assert 0.35 < expected < 0.65  # the planted 1.5x, seen through the jitter


def test_a_shift_must_clear_both_floors():
    p = project()
    small_rel = by_gate(evaluate(p, [record(samples=jitter(seed=1, median=1.1))],
                                 baseline(record(samples=jitter(seed=2, median=1.0)))))
    assert small_rel["regression.latency"]["status"] == "pass"  # +10%: significant, under the 20% floor
    tiny_abs = by_gate(evaluate(p, [record(samples=jitter(seed=1, median=0.03))],
                                baseline(record(samples=jitter(seed=2, median=0.01)))))
    assert tiny_abs["regression.latency"]["status"] == "pass"  # 3x, but +0.02 ms is under the 0.05 ms floor


def test_regression_without_samples_uses_floors_only():
    cur, base = record(samples=jitter(median=2.0)), record(samples=jitter(seed=5))
    del cur["latency"]["samples_ms"]
    lat = by_gate(evaluate(project(), [cur], baseline(base)))["regression.latency"]
    assert lat["status"] == "fail" and "no raw samples" in lat["detail"] and lat["confidence"] is None


def test_size_accuracy_and_memory_regressions():
    g = by_gate(evaluate(project(), [record(size=120_000, acc=94.0, peak=700)],
                         baseline(record(size=40_000, acc=97.0, peak=300))))
    assert g["regression.size"]["status"] == "fail"
    assert g["regression.accuracy"]["status"] == "fail"
    assert g["regression.memory"]["status"] == "fail"
    ok = by_gate(evaluate(project(), [record(size=41_000)], baseline(record(size=40_000))))
    assert ok["regression.size"]["status"] == "pass"  # +1 KB: under both floors


@pytest.mark.parametrize("change, words", [
    ({"device": "ssh://pi@raspberrypi"}, "device ssh://pi@raspberrypi vs local"),
    ({"runtime": "ai-edge-litert 2.2.0"}, "runtime ai-edge-litert 2.2.0 vs ai-edge-litert 2.3.0"),
    ({"threads": 4}, "threads 4 vs 1"),
])
def test_a_baseline_from_elsewhere_is_flagged_not_compared(change, words):
    base = record(samples=jitter(median=0.1), **change)
    g = by_gate(evaluate(project(), [record(samples=jitter(median=5.0))], baseline(base)))
    assert g["baseline.match"]["status"] == "fail" and words in g["baseline.match"]["detail"]
    assert g["regression.latency"]["status"] == "skipped"


def test_a_baseline_with_another_recipe_for_the_same_file_is_flagged():
    base = record(target="tflite:fp16")
    base["artifact"] = "digits.int8.tflite"
    g = by_gate(evaluate(project(), [record()], baseline(base)))
    assert g["baseline.match"]["status"] == "fail" and "recipe fp16 vs int8" in g["baseline.match"]["detail"]


def test_a_new_target_has_nothing_to_compare_with():
    g = by_gate(evaluate(project(), [record()], baseline(record(target="pte:fp32"))))
    assert g["baseline.match"]["status"] == "skipped" and "regression.latency" not in g


def test_mann_whitney_matches_scipy():
    from scipy import stats

    a, b = jitter(seed=3, median=1.05), jitter(seed=4)
    a[:5] = b[:5]  # ties
    ours = mann_whitney_greater(a, b)
    theirs = stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_bootstrap_bound_is_below_the_shift_and_seeded():
    a, b = jitter(seed=1, median=1.5), jitter(seed=2)
    shift, lo = median_shift_lower_bound(a, b, 0.999)
    assert 0 < lo < shift and (shift, lo) == median_shift_lower_bound(a, b, 0.999)


def test_emulated_latency_is_not_gated_by_the_host_budget():
    slow = record(device="emu:rpi4", emulated=True, samples=jitter(median=20.0))
    g = by_gate(evaluate(project(latency={"p50_ms": 2.0}), [slow]))
    assert g["latency.p50"]["status"] == "skipped" and "emulated" in g["latency.p50"]["detail"]
    own = project(latency={"p50_ms": 2.0, "device": {"emu:rpi4": {"p50_ms": 10.0}}})
    assert by_gate(evaluate(own, [slow]))["latency.p50"]["status"] == "fail"  # its own budget: gated
