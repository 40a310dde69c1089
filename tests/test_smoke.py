"""No dead artifacts: export smoke-runs every artifact it wrote, in a child process, on one golden
sample; an artifact that cannot load fails the export (exit 1) with the runtime's own words, and
the other artifacts are still written, each with its smoke result in the manifest.

The planted fault: the real torch -> .onnx route, with its int8 output cut in half after it was
written (what a converter bug or a full disk leaves behind). onnx/onnxruntime refuse the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgeship.cli import cli


def test_export_fails_an_artifact_that_cannot_load_and_writes_the_others(torch_digits, tmp_path, monkeypatch):
    import edgeship.convert.torch_onnx as route

    real = route.convert

    def convert_then_truncate(model, recipe, calib, out_path, options):
        result = real(model, recipe, calib, out_path, options)
        if recipe.name == "int8":
            data = Path(out_path).read_bytes()
            Path(out_path).write_bytes(data[: len(data) // 2])
        return result

    monkeypatch.setattr(route, "convert", convert_then_truncate)
    out = tmp_path / "bundle"
    res = CliRunner().invoke(cli, ["export", torch_digits.source, "--to", "onnx", "--quant", "fp32,int8",
                                   "--calib", "digits:train", "--calib-samples", "32", "--golden-samples", "8",
                                   "--bias-correction", "off",  # the planted break is in the route: one conversion
                                   "--out", str(out)])
    text = " ".join((res.output + res.stderr).split())
    assert res.exit_code == 1, res.output
    assert "int8.onnx" in text
    assert "could not run" in text and "load:" in text, text
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = {a["path"]: a for a in manifest["artifacts"]}
    assert sorted(p.rsplit(".", 2)[-2] + "." + p.rsplit(".", 1)[-1] for p in shipped) == \
        ["fp32.onnx"]
    for rec in shipped.values():
        assert (out / rec["path"]).is_file()
        assert rec["smoke"]["status"] == "pass" and rec["smoke"]["cosine"] > 0.99, rec["smoke"]
    (bad,) = manifest["failed_artifacts"]
    assert bad["path"].startswith("failed/") and (out / bad["path"]).is_file()
    assert bad["smoke"]["status"] == "fail" and "load:" in bad["smoke"]["error"]
    words = bad["smoke"]["error"].split("load: ", 1)[1]
    assert words[:60] in text, (words, text)  # the loader's own words reach the terminal
    print(words)
    # A bundle with a failed artifact is never "up to date": the next export tries again.
    from edgeship.uptodate import up_to_date

    assert up_to_date(out, manifest["inputs_sha256"]) is None
