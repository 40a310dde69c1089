"""Options for the device suite: `pytest device_tests --bundle DIR [--device URI] ...`.

Each artifact of the bundle is run once on the device (through edgeship's agent, in a child
process with a timeout); the tests then judge the results. JUnit through pytest's --junitxml.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("edgeship")
    g.addoption("--bundle", help="bundle folder written by `edgeship export`")
    g.addoption("--device", default="local", help="device URI (default: local)")
    g.addoption("--max-drop", type=float, default=None, help="allowed top-1 drop in points (default: per recipe)")
    g.addoption("--latency-p90-ms", type=float, default=None, help="p90 latency budget per artifact, ms")
    g.addoption("--threads", type=int, default=1)


def _artifact_names(config) -> list[str]:
    bundle = config.getoption("--bundle")
    if not bundle:
        return []
    from edgeship.bundle import read_bundle

    return [a["path"] for a in read_bundle(Path(bundle)).artifacts]


def pytest_generate_tests(metafunc):
    if "artifact" in metafunc.fixturenames:
        names = _artifact_names(metafunc.config)
        metafunc.parametrize("artifact", names, ids=names, scope="session")


@pytest.fixture(scope="session")
def device_results(request):
    bundle = request.config.getoption("--bundle")
    if not bundle:
        pytest.skip("no --bundle given: pytest device_tests --bundle DIR [--device URI]")
    from edgeship.validate import ValidateRequest, validate

    req = ValidateRequest(Path(bundle), device=request.config.getoption("--device"),
                          threads=request.config.getoption("--threads"),
                          max_drop=request.config.getoption("--max-drop"))
    results, context = validate(req)
    return {r["artifact"]: r for r in results}, context


@pytest.fixture
def result(device_results, artifact):
    return device_results[0][artifact]
