"""`export --quant auto --device URI`: the recipe search measures its candidates' drop and p50 on the
device (quantize/recipe_search.py), not in the exporting process.

  emu:rpi4 for real (Debian arm64 under qemu, LiteRT and edgeship's native ExecuTorch runner
  built for aarch64): the planted fragile net (tests/planted/fragile_torch.py) searched to .tflite
  and .pte; the manifest says where it measured, that the device is emulated, and the kept
  artifact is the one the selection rule picks from the device's own figures
  an unreachable device: exit 3 before any conversion, nothing written
  --device without --quant auto: one line, exit 2
  a candidate that fails on the device is a row saying so and is never kept (a stand-in device
  that fails every run: no real device fails on demand)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgeship.bundle import MANIFEST
from edgeship.cli import cli
from edgeship.quantize.recipe_search import Candidate, Search, select
from edgeship.runtime.base import AgentRun

from device_support import emu_rootfs, free_port  # noqa: F401  (fixture)

PLANTED = Path(__file__).resolve().parent / "planted"
FRAGILE_TORCH = f"{PLANTED / 'fragile_torch.py'}:build"
COMMON = ["--quant", "auto", "--calib", "digits:train", "--calib-samples", "100", "--eval", "digits:test",
          "--golden-samples", "40", "--calibration", "minmax", "--bias-correction", "off", "--cle", "off",
          "--max-drop", "1", "--metric", "top1"]


def _export(out: Path, *args: str):
    return CliRunner().invoke(cli, ["export", FRAGILE_TORCH, *COMMON, *args, "--out", str(out)])


def test_search_on_the_emulated_pi_measures_there(emu_rootfs, tmp_path):
    bundle = tmp_path / "b"
    r = _export(bundle, "--to", "tflite,pte", "--device", "emu:rpi4")
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "candidates measured on emu:rpi4 (emulated)" in said and "drop and p50 on emu:rpi4" in said
    manifest = json.loads((bundle / MANIFEST).read_text())
    searches = {a["format"]: a["recipe_search"] for a in manifest["artifacts"]}
    assert set(searches) == {"tflite", "pte"}
    for fmt, s in searches.items():
        assert s["device"] == "emu:rpi4" and s["emulated"] is True, fmt
        assert "emulated" in s["measured_on"] and "not the board's" in s["measured_on"]
        measured = [c for c in s["candidates"] if c["drop"] is not None]
        assert {c["candidate"] for c in measured} >= {"int8", "fp16"}, fmt
        assert all(c["p50_ms"] > 0 for c in measured)
        int8 = next(c for c in measured if c["candidate"] == "int8")
        assert int8["drop"] > 20  # the planted outlier, as on the host: the device ran the real artifact
        rows = [Candidate.from_row(c) for c in measured]  # with the device's per-run latencies
        assert s["met"] and s["kept"] == select(rows, 1.0)[0].candidate, fmt  # the rule, on the device's runs
    assert "pte" in {a["format"] for a in manifest["artifacts"] if a["smoke"]["status"] == "pass"}


def test_an_unreachable_device_stops_the_export_before_any_conversion(tmp_path):
    bundle, loaded = tmp_path / "b", tmp_path / "the-model-was-loaded"
    watched = tmp_path / "watched_fragile.py"  # the planted net, leaving a mark when edgeship loads it
    watched.write_text(f"import runpy\nfrom pathlib import Path\n\n\ndef build():\n"
                       f"    Path({str(loaded)!r}).touch()\n"
                       f"    return runpy.run_path({str(PLANTED / 'fragile_torch.py')!r})['build']()\n")
    r = CliRunner().invoke(cli, ["export", f"{watched}:build", *COMMON, "--to", "tflite", "--device",
                                 f"ssh://root@127.0.0.1:{free_port()}", "--out", str(bundle)])
    assert r.exit_code == 3, r.output
    assert "127.0.0.1" in r.output and "Traceback" not in r.output
    assert "export " not in r.output and "recipe search:" not in r.output  # no candidate was converted
    assert not bundle.exists()
    assert not loaded.exists()  # the connection is tried before the model loads, not after searching


def test_device_without_the_search_is_refused(tmp_path):
    bundle = tmp_path / "b"
    r = CliRunner().invoke(cli, ["export", FRAGILE_TORCH, "--to", "tflite", "--quant", "fp32", "--device",
                                 "emu:rpi4", "--out", str(bundle)])
    assert r.exit_code == 2, r.output
    assert "--quant auto" in r.output and "edgeship validate BUNDLE --device emu:rpi4" in r.output
    assert not bundle.exists()


class FailingDeviceStandIn:
    """Stands in for a device whose runtime fails every artifact (no real device fails on demand)."""

    uri = "ssh://pi@board"
    emulated = False

    def __init__(self):
        self.runs = 0

    def run_artifact(self, artifact, inputs, signature, **kw):
        self.runs += 1
        return AgentRun(False, {"ok": False}, error="load: RuntimeError: unsupported op on this CPU")


class _Golden:
    inputs = [np.zeros((2, 1, 8, 8), np.float32)]
    outputs = [np.zeros((2, 10), np.float32)]
    labels = None


class _Options:
    verbose = False


def test_a_candidate_that_fails_on_the_device_is_never_kept(tmp_path):
    device = FailingDeviceStandIn()
    search = Search(None, _Golden(), "top1", 1.0, None, _Options(), log=lambda *_: None, device=device)
    artifact = tmp_path / "int8.tflite"
    artifact.write_bytes(b"\0" * 64)
    c = search.measure(Candidate("int8", "int8", path=artifact), route=None, feeds=[])
    assert device.runs == 1
    assert not c.measured and c.drop is None and c.p50_ms is None
    assert c.reason == "failed on ssh://pi@board: load: RuntimeError: unsupported op on this CPU"
    ok = Candidate("fp16", "fp16", drop=0.0, p50_ms=2.0, size_bytes=10, path=Path("fp16"))
    assert select([c, ok], 1.0) == (ok, True)
    assert search.measured_on == "ssh://pi@board"
