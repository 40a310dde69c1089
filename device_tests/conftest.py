"""Options for the device suite: `pytest device_tests --bundle DIR [--device URI] ...`.

Each artifact of the bundle is run once on the device (through edgeship's agent, in a child
process with a timeout); the tests then judge the results. JUnit through pytest's --junitxml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.bundle import read_bundle
from edgeship.validation import ValidateRequest, validate


def pytest_addoption(parser):
    g = parser.getgroup("edgeship")
    g.addoption("--bundle", help="bundle folder written by `edgeship export`")
    g.addoption("--device", action="append", default=None,
                help="device URI (default: local); repeat for several devices, e.g. with -n 2 --dist loadgroup "
                     "(pytest-xdist) to run them in parallel")
    g.addoption("--max-drop", type=float, default=None, help="allowed top-1 drop in points (default: per recipe)")
    g.addoption("--latency-p90-ms", type=float, default=None, help="p90 latency budget per artifact, ms")
    g.addoption("--threads", type=int, default=1)


def _artifact_names(config) -> list[str]:
    bundle = config.getoption("--bundle")
    if not bundle:
        return []

    return [a["path"] for a in read_bundle(Path(bundle)).artifacts]


def _devices(config) -> list[str]:
    return list(dict.fromkeys(config.getoption("--device") or ["local"]))


def pytest_generate_tests(metafunc):
    """One test per (device, artifact); a device's tests share an xdist group (one worker each)."""
    if "artifact" in metafunc.fixturenames:
        names = _artifact_names(metafunc.config)
        devices = _devices(metafunc.config)
        params = [pytest.param((d, n), id=n if len(devices) == 1 else f"{d}::{n}",
                               marks=pytest.mark.xdist_group(d)) for d in devices for n in names]
        metafunc.parametrize("artifact", params, scope="session")


@pytest.fixture(scope="session")
def device_results(request):
    """results(uri) -> ({artifact: record}, context): each device validated once per process."""
    bundle = request.config.getoption("--bundle")
    if not bundle:
        pytest.skip("no --bundle given: pytest device_tests --bundle DIR [--device URI]")

    cache = {}

    def results(uri: str):
        if uri not in cache:
            req = ValidateRequest(Path(bundle), device=uri, threads=request.config.getoption("--threads"),
                                  max_drop=request.config.getoption("--max-drop"))
            records, context = validate(req)
            cache[uri] = ({r["artifact"]: r for r in records}, context)
        return cache[uri]

    return results


@pytest.fixture
def result(device_results, artifact):
    device, name = artifact
    return device_results(device)[0][name]
