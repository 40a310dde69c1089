"""Report writers on one report: JSON (versioned schema), JUnit XML, Markdown, self-contained HTML,
and the HTML rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from test_gates import baseline, jitter, record

from edgeship.config import parse_project
from edgeship.gates.budgets import evaluate
from edgeship.reports import FILES, build_report, write_reports

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report():
    data = {"model": {"source": "m.py:build", "name": "digits"},
            "targets": [{"format": "tflite", "recipe": "fp32"}, {"format": "tflite", "recipe": "int8"},
                        {"format": "pte", "recipe": "int8"}],
            "gates": {"latency": {"p50_ms": 2.0}, "size": {"max_kb": 100}, "accuracy": {"min_top1": 90}}}
    cfg = parse_project(data, Path("/tmp/edgeship.toml"))
    results = [
        record("tflite:fp32", acc=97.3, cos=1.0, size=110_000, samples=jitter(median=0.05, seed=1)),  # size fails
        record("tflite:int8", acc=97.1, size=35_000, samples=jitter(median=0.04, seed=2)),
        record("pte:int8", acc=96.9, size=45_000, samples=jitter(median=0.09, seed=3), runtime="executorch 1.5.1"),
    ]
    base = baseline(*[dict(r) for r in results[:2]], {**results[2], "device": "ssh://pi@raspberrypi"})
    gates = evaluate(cfg.project, results, base)
    contexts = [{"device": "local", "emulated": False, "bundle": "/nonexistent", "reference": "golden vectors",
                 "threads": 1, "warmup": 10, "runs": 100, "model": "digits"}]
    return build_report(cfg, results, contexts, gates, base, 12.5)


def failing(report):
    return {(g["gate"], g["target"]) for g in report["gates"] if g["status"] in ("fail", "not_measured")}


def test_verdict_and_summary(report):
    assert report["schema"] == "edgeship.check/1" and report["status"] == "fail" and report["exit_code"] == 1
    assert failing(report) == {("size", "tflite:fp32"), ("baseline.match", "pte:int8")}
    s = report["summary"]
    assert s["total"] == len(report["gates"]) and s["fail"] == 2
    assert "size tflite:fp32@local" in s["failing"] and "baseline.match pte:int8@local" in s["failing"]


def test_all_files_written_together(report, tmp_path):
    written = write_reports(report, tmp_path)
    assert {p.name for p in written.values()} == set(FILES.values())
    assert not list(tmp_path.glob(".*tmp*"))


def test_json_is_standard_and_versioned(report, tmp_path):
    path = write_reports(report, tmp_path, ["json"])["json"]
    data = json.loads(path.read_text())  # standard JSON: no NaN/Infinity
    assert data["schema"] == "edgeship.check/1"
    for key in ("edgeship_version", "created_unix", "status", "exit_code", "project", "settings", "tools",
                "bundles", "baseline", "summary", "gates", "results", "contexts"):
        assert key in data, key
    g = data["gates"][0]
    assert set(g) == {"gate", "target", "artifact", "device", "status", "value", "limit", "op", "unit", "detail",
                      "confidence", "p_value"}
    assert len(data["results"][0]["latency"]["samples_ms"]) == 100


def test_junit_one_testcase_per_gate_target_device(report, tmp_path):
    root = ET.parse(write_reports(report, tmp_path, ["junit"])["junit"]).getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(report["gates"]) == int(root.get("tests"))
    keys = {(c.get("classname"), c.get("name")) for c in cases}
    assert len(keys) == len(cases)  # unique per gate x target x device
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert failed == {("edgeship.tflite:fp32.local", "size"), ("edgeship.pte:int8.local", "baseline.match")}
    msg = next(c for c in cases if c.get("name") == "size" and c.find("failure") is not None).find("failure")
    assert "size: 107.4 KB (limit <= 100 KB)" in msg.get("message")
    assert root.get("failures") == "2"
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert {c.get("name") for c in skipped} == {"regression.accuracy", "regression.latency", "regression.size",
                                                "regression.memory"}


def test_markdown_names_the_failing_gates(report, tmp_path):
    md = write_reports(report, tmp_path, ["markdown"])["markdown"].read_text()
    assert md.startswith("## edgeship check: digits ❌ failed")
    section = md.split("### Failing gates")[1].split("### Results")[0]
    assert "| `tflite:fp32` | local | `size` | 107.4 KB | <= 100 KB | ❌ **FAIL**" in section
    assert "`baseline.match`" in section and "device ssh://pi@raspberrypi vs local" in section
    assert "`digits.int8.pte`" in md.split("### Results")[1]


def test_html_is_self_contained(report, tmp_path):
    html = write_reports(report, tmp_path, ["html"])["html"].read_text()
    assert html.count("data:image/png;base64,") == 2  # latency distributions, accuracy/size/latency
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    assert 'class="verdict fail"' in html and "Failing gates" in html
    assert "Per-layer error was not computed" in html


def test_html_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    from device_support import require_tool

    require_tool(CHROMIUM.name, "chromium")  # a missing tool fails loudly, never skips (README: Tests)

    html = write_reports(report, tmp_path, ["html"])["html"]
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1200,1600", f"--screenshot={shot}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    proc = subprocess.run([str(CHROMIUM), *flags, html.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    if os.environ.get("EDGESHIP_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["EDGESHIP_KEEP_SCREENSHOT"])
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colors = img.getcolors(maxcolors=1 << 20)
    inked = sum(n for n, c in colors if c != (255, 255, 255))
    assert inked > 0.05 * 1200 * 1600  # text, tables and plots, not a blank page
    verdict_red = sum(n for n, c in colors if abs(c[0] - 0xC6) < 8 and abs(c[1] - 0x28) < 8 and abs(c[2] - 0x28) < 8)
    assert verdict_red > 500  # the red FAIL badge and failing statuses rendered
    plot_blue = sum(n for n, c in colors if c == (0x1F, 0x77, 0xB4))
    assert plot_blue > 50  # the embedded matplotlib figures decoded and drew
