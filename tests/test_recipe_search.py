"""--quant auto --max-drop X --metric M: the recipe search (quantize/recipe_search.py), on models
whose answer is known.

  the planted fragile layer (tests/planted/fragile_torch.py: one activation channel 1000x the
  others inside `fragile`), torch -> .tflite and torch -> .onnx, top-1 budget 1 point:
    .tflite  int8 misses (the outlier takes the whole range), int8 with `fragile` float meets it:
             kept, int16x8 and fp16 not measurably faster (a tie: the order int8 < int8+float <
             int16x8 < fp16 breaks it; quantize/recipe_search.py's select())
    .onnx    int8 and int16x8 miss, int8 with `fragile` float (onnxruntime's nodes_to_exclude) and fp16
             meet it; the kept one is the selection rule's answer on this run's p50s
  a budget only fp16 meets (cosine drop 0.001): fp16 kept
  a budget nothing meets (cosine drop 0): exit 1, the smallest drop kept, the table and validate
  say so
  --quant auto without --max-drop: one line, exit 2

Real converters and runtimes, real data (scikit-learn's digits), a model trained here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli
from edgeship.quantize.recipe_search import Candidate, select

PLANTED = Path(__file__).resolve().parent / "planted"
FRAGILE_TORCH = f"{PLANTED / 'fragile_torch.py'}:build"
# bias correction and CLE off: the known answers are the recipes' (with the default, auto, bias
# correction also rescues int16x8 .onnx on the fragile net: top-1 drop 0, and CLE auto rescues
# int8 .tflite there: drop 0); the test that turns bias correction on says so
COMMON = ["--quant", "auto", "--calib", "digits:train", "--calib-samples", "100", "--eval", "digits:test",
          "--calibration", "minmax", "--bias-correction", "off", "--cle", "off"]


def _export(out: Path, *args: str):
    return CliRunner().invoke(cli, ["export", FRAGILE_TORCH, *COMMON, *args, "--out", str(out)])


def _tables(bundle: Path) -> dict[str, dict]:
    manifest = json.loads((bundle / MANIFEST).read_text())
    return {a["format"]: {**a["recipe_search"], "artifact": a} for a in manifest["artifacts"]}


def _row(search: dict, candidate: str) -> dict:
    return next(c for c in search["candidates"] if c["candidate"] == candidate)


# ---------------------------------------------------------------------------------------------
# The selection rule itself (pure): within budget, the first in the fixed order that nothing is
# measurably faster than; none within: smallest drop (tests/test_recipe_search_ties.py: the runs' test)


def _c(name, drop, p50, size):
    return Candidate(name, name, drop=drop, p50_ms=p50, size_bytes=size, path=Path(name))


def test_select_keeps_the_first_in_order_nothing_beats_within_budget():
    fast_over = _c("int8", 5.0, 1.0, 100)
    slow_in = _c("int16x8", 0.5, 3.0, 150)
    fast_in = _c("fp16", 0.1, 2.0, 200)
    assert select([fast_over, slow_in, fast_in], 1.0) == (fast_in, True)  # measured p50, not list order
    tied_small = _c("int8+float", 0.4, 2.05, 120)  # within 10% of fp16's: a tie, the earlier in order wins
    assert select([fast_over, tied_small, slow_in, fast_in], 1.0) == (tied_small, True)
    assert select([fast_over, slow_in, fast_in], 0.01) == (fast_in, False)  # none within: smallest drop
    broken = Candidate("fp16", "fp16", reason="failed: ...")  # not measured: never kept
    assert select([broken, fast_over], 10.0) == (fast_over, True)


# ---------------------------------------------------------------------------------------------
# The fragile layer, on .tflite and .onnx


@pytest.fixture(scope="module")
def fragile_search(tmp_path_factory):
    bundle = tmp_path_factory.mktemp("search") / "b"
    r = _export(bundle, "--to", "tflite,onnx", "--max-drop", "1", "--metric", "top1")
    return bundle, r


def test_fragile_layer_tflite_keeps_int8_with_the_one_float_layer(fragile_search):
    bundle, r = fragile_search
    assert r.exit_code == 0, r.output
    s = _tables(bundle)["tflite"]
    assert s["met"] and s["metric"] == "top1" and s["budget"] == 1.0
    assert [c["candidate"] for c in s["candidates"]] == ["int8", "int8+float", "int16x8", "fp16"]
    int8, with_float, int16, fp16 = (_row(s, n) for n in ("int8", "int8+float", "int16x8", "fp16"))
    assert int8["drop"] > 20 and not int8["within_budget"]  # the outlier takes int8's whole range
    assert with_float["within_budget"] and with_float["float_layers"] == ["fragile"]  # the planted one only
    assert int16["drop"] is not None and not int16["kept"]  # measured (ai-edge-quantizer's 16x8), after int8+float
    assert fp16["within_budget"]
    assert s["kept"] == "int8+float" and with_float["kept"] and not fp16["kept"]
    # fp16 is not measurably faster: a tie (or slower), whatever the host's load did to the raw p50s
    assert fp16["reason"].startswith(("tied with int8+float", "slower than int8+float")), fp16["reason"]
    assert with_float["size_bytes"] < fp16["size_bytes"]
    a = s["artifact"]
    assert a["path"] == "fragile_torch.int8.tflite" and a["recipe"] == "int8"  # its recipe's usual name
    assert a["accuracy_aware"]["kept_float"] == ["fragile"] and "kept float: fragile" in a["route"]
    assert a["smoke"]["status"] == "pass"
    assert all(p50 is not None and p50 > 0 for p50 in (int8["p50_ms"], with_float["p50_ms"], fp16["p50_ms"]))


def test_fragile_layer_onnx_keeps_the_one_float_layer_too(fragile_search):
    bundle, _ = fragile_search
    s = _tables(bundle)["onnx"]
    int8, with_float, int16, fp16 = (_row(s, n) for n in ("int8", "int8+float", "int16x8", "fp16"))
    assert int8["drop"] > 20 and int16["drop"] > 1.0  # int16 activations: the outlier still costs too much
    assert with_float["within_budget"] and with_float["float_layers"] == ["fragile"]  # nodes_to_exclude
    assert fp16["within_budget"] and s["met"]
    # which of the two is kept is the selection rule's answer on the p50s measured in this run
    rows = [Candidate.from_row(c) for c in s["candidates"] if c["drop"] is not None]  # with their runs
    assert s["kept"] == select(rows, 1.0)[0].candidate
    kept = _row(s, s["kept"])
    assert s["artifact"]["path"] == f"fragile_torch.{kept['recipe']}.onnx"


def test_only_the_kept_artifacts_are_in_the_bundle(fragile_search):
    bundle, r = fragile_search
    files = sorted(p.name for p in bundle.iterdir() if p.suffix in (".tflite", ".onnx", ".pte"))
    onnx_kept = _row(_tables(bundle)["onnx"], _tables(bundle)["onnx"]["kept"])["recipe"]
    assert files == [f"fragile_torch.{onnx_kept}.onnx", "fragile_torch.int8.tflite"]
    said = " ".join(r.output.split())
    assert "recipe search .tflite" in said and "recipe search .onnx" in said
    assert "int8+float" in said and "fragile" in said and "kept" in said


def test_a_budget_only_fp16_meets(tmp_path):
    """cosine drop 0.001: int8 with `fragile` float stays at about 0.004 (measured), fp16 at 2e-6."""
    bundle = tmp_path / "b"
    r = _export(bundle, "--to", "onnx", "--max-drop", "0.001", "--metric", "cosine")
    assert r.exit_code == 0, r.output
    s = _tables(bundle)["onnx"]
    with_float, fp16 = _row(s, "int8+float"), _row(s, "fp16")
    assert with_float["float_layers"] == ["fragile"] and not with_float["within_budget"]
    assert s["met"] and s["kept"] == "fp16" and fp16["kept"]
    assert s["artifact"]["path"] == "fragile_torch.fp16.onnx"


def test_validate_passes_what_the_search_kept(fragile_search):
    bundle, _ = fragile_search
    r = CliRunner().invoke(cli, ["validate", str(bundle), "--runs", "3", "--warmup", "1"])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------------------
# A budget nothing meets; bad input


def test_budget_nothing_meets_exits_1_and_keeps_the_best(tmp_path):
    bundle = tmp_path / "b"
    r = _export(bundle, "--to", "onnx", "--max-drop", "0", "--metric", "cosine")
    assert r.exit_code == 1, r.output
    said = " ".join(r.output.split())
    assert "no recipe meets the cosine drop budget 0" in said and "BUDGET MISSED" in said
    s = _tables(bundle)["onnx"]
    measured = [c for c in s["candidates"] if c["drop"] is not None]
    assert not s["met"] and all(c["drop"] > 0 for c in measured)
    best = min(measured, key=lambda c: c["drop"])
    assert s["kept"] == best["candidate"] == "fp16" and best["kept"]
    assert "BUDGET MISSED" in best["reason"]
    r = CliRunner().invoke(cli, ["validate", str(bundle), "--runs", "3", "--warmup", "1"])
    assert r.exit_code == 1, r.output  # validate treats it as failing its budget
    assert "recipe_search" in r.output


def test_quant_auto_without_max_drop_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["export", FRAGILE_TORCH, "--quant", "auto", "--calib", "digits:train",
                                 "--eval", "digits:test", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: --quant auto needs --max-drop"), r.output
    assert "Traceback" not in r.output and not (tmp_path / "b").exists()


def test_quant_auto_mixed_with_recipes_is_refused(tmp_path):
    r = CliRunner().invoke(cli, ["export", FRAGILE_TORCH, "--quant", "auto,fp16", "--max-drop", "1",
                                 "--calib", "digits:train", "--eval", "digits:test", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "takes no others" in r.output, r.output


# ---------------------------------------------------------------------------------------------
# --bias-correction inside the search: the quantized candidates are corrected, fp16 never


def test_bias_correction_lifts_the_search_int8_candidate_and_leaves_fp16_alone(tmp_path):
    """tests/planted/shift_torch.py loses a one-sided 7% in its depthwise conv to int8 rounding:
    measured here, int8's cosine drop 0.024 without bias correction, 0.0007 with it; a fresh machine
    measured 0.021 and 0.0061. How far the correction lifts it depends on the CPU's int8 kernels
    (onnxruntime's, and the 8- or 7-bit weight width convert/onnx_common.py measures on them), not
    on timing: the property is into the budget it missed, by a wide margin (3x), fp16 untouched."""
    shift = f"{PLANTED / 'shift_torch.py'}:build"
    rows = {}
    for mode in ("off", "on"):
        r = CliRunner().invoke(cli, ["export", shift, *COMMON, "--to", "onnx", "--max-drop", "0.01", "--metric",
                                     "cosine", "--bias-correction", mode, "--out", str(tmp_path / mode)])
        assert r.exit_code == 0, r.output
        s = _tables(tmp_path / mode)["onnx"]
        rows[mode] = {n: _row(s, n) for n in ("int8", "int16x8", "fp16")}
    assert not rows["off"]["int8"]["within_budget"] and rows["on"]["int8"]["within_budget"]
    assert rows["on"]["int8"]["drop"] < rows["off"]["int8"]["drop"] / 3
    assert rows["on"]["int16x8"]["drop"] < rows["off"]["int16x8"]["drop"] / 3  # corrected for 16-bit inputs
    assert rows["on"]["fp16"]["drop"] == rows["off"]["fp16"]["drop"]  # the fp16 candidate is not rewritten
