"""The same source, recipe and calibration data give byte-identical artifacts: a .pt2 and a .keras
source with plain recipes; an nn.Module source with its rewrites on (the defaults, --cle auto and
--bias-correction auto), plainly and through --quant auto's recipe search."""

from __future__ import annotations

import json

import pytest

from edgeship.bundle import MANIFEST, read_bundle
from edgeship.pipeline import ExportRequest, export


def _hashes(out):
    return {a["path"]: a["sha256"] for a in read_bundle(out).artifacts}


def _twice(tmp_path, **request) -> list[dict]:
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        export(ExportRequest(out=out, calib="digits:train", golden_samples=8, **request))
        runs.append(_hashes(out))
    assert runs[0].keys() == runs[1].keys()
    differing = [name for name in runs[0] if runs[0][name] != runs[1][name]]
    assert differing == []
    for name in runs[0]:
        assert (tmp_path / "run0" / name).read_bytes() == (tmp_path / "run1" / name).read_bytes()
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["torch_digits_pt2", "keras_digits"])
def test_two_exports_are_byte_identical(fixture, request, tmp_path):
    trained = request.getfixturevalue(fixture)
    runs = _twice(tmp_path, source=trained.source, recipes="fp32,int8")
    assert len(runs[0]) == 4


@pytest.mark.slow
def test_an_nn_module_re_export_with_rewrites_on_is_byte_identical(torch_digits, tmp_path):
    runs = _twice(tmp_path, source=torch_digits.source, recipes="fp32,int8")  # cle, bias correction: auto
    assert len(runs[0]) == 4
    manifest = json.loads((tmp_path / "run0" / MANIFEST).read_text())
    int8 = [a for a in manifest["artifacts"] if a["recipe"] == "int8"]
    assert len(int8) == 2 and all("bias_correction" in a for a in int8)  # the rewrites ran on them


@pytest.mark.slow
def test_an_nn_module_re_export_under_quant_auto_is_byte_identical(torch_digits, tmp_path):
    """The search's kept recipe is part of the bytes: p50s no test separates tie, broken by a fixed
    order (quantize/recipe_search.py), so the same choice and the same artifact come back."""
    runs = _twice(tmp_path, source=torch_digits.source, targets=["pte"], recipes="auto", eval="digits:test",
                  max_drop=1.0, metric="top1")
    assert len(runs[0]) == 1
    kept = [json.loads((tmp_path / f"run{i}" / MANIFEST).read_text())["artifacts"][0]["recipe_search"]["kept"]
            for i in range(2)]
    assert kept[0] == kept[1]
