"""The same source, recipe and calibration data give byte-identical artifacts."""

from __future__ import annotations

import pytest

from edgeship.bundle import read_bundle
from edgeship.pipeline import ExportRequest, export


def _hashes(out):
    return {a["path"]: a["sha256"] for a in read_bundle(out).artifacts}


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["torch_digits_pt2", "keras_digits"])
def test_two_exports_are_byte_identical(fixture, request, tmp_path):
    trained = request.getfixturevalue(fixture)
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        export(ExportRequest(source=trained.source, out=out, recipes="fp32,int8", calib="digits:train",
                             golden_samples=8))
        runs.append(_hashes(out))
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 4
    differing = [name for name in runs[0] if runs[0][name] != runs[1][name]]
    assert differing == []
    for name in runs[0]:
        assert (tmp_path / "run0" / name).read_bytes() == (tmp_path / "run1" / name).read_bytes()
