"""Release checks for every artifact of a bundle on one device."""

from __future__ import annotations

import pytest

from edgeship.status import Status


def _ran(result):
    if result["status"] == Status.ERROR:
        pytest.fail(f"{result['artifact']} could not be run on {result['device']}: {result['error']}")


def test_loads_with_delegate(result):
    _ran(result)
    delegate = result.get("delegate")
    if not delegate:  # a run that says nothing about its delegate proves nothing about it
        pytest.fail(f"{result['artifact']}: {result['device']} reported no delegate record for this run")
    if isinstance(delegate, str):  # a native runner (adb) names the delegate its log reports
        assert delegate == "XNNPACK", f"{result['artifact']}: delegate {delegate!r}"
    elif result["artifact"].endswith(".onnx"):  # onnxruntime has no delegate to fall back from
        assert delegate.get("name") and delegate.get("active") is None, delegate
    elif delegate.get("active") is not True:
        pytest.fail(f"{result['artifact']}: {delegate.get('name', 'delegate')} is not active "
                    f"({delegate.get('detail', 'no detail')})")


def test_outputs_match_golden(result):
    _ran(result)
    check = next((c for c in result["checks"] if c["name"] == "cosine"), None)
    if check is None:
        pytest.skip("no golden reference for this artifact")
    assert check["passed"], f"cosine {check['value']:.5f} < {check['limit']} for recipe {result['recipe']}"


def test_accuracy_within_budget(result):
    _ran(result)
    check = next((c for c in result["checks"] if c["name"] == "accuracy_drop"), None)
    if check is None:
        pytest.skip("the golden vectors carry no labels")
    assert check["passed"], f"top-1 drop {check['value']:.2f} points > {check['limit']}"


def test_latency_within_budget(result, request):
    budget = request.config.getoption("--latency-p90-ms")
    if budget is None:
        pytest.skip("no --latency-p90-ms budget given")
    if result.get("emulated"):
        pytest.skip("latency on an emulated device is not device latency")
    _ran(result)
    p90 = result["latency"]["p90_ms"]
    assert p90 <= budget, f"p90 {p90:.2f} ms > budget {budget} ms"
