"""edgeship.toml / [tool.edgeship]: loading, defaults, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeship.cli import cli
from edgeship.config import load_config
from edgeship.errors import InputError

REPO = Path(__file__).resolve().parents[1]
GOOD = """
targets = [{ format = "tflite", recipe = "int8" }]
[model]
source = "net.py:build"
[data]
calib = "digits:train"
eval = "calib.npz"
"""


def write(tmp_path, text, name="edgeship.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path) -> str:
    with pytest.raises(InputError) as e:
        load_config(path)
    return e.value.message


def test_example_project_loads():
    cfg = load_config(REPO / "examples" / "edgeship.toml")
    p = cfg.project
    assert [t.key for t in p.targets] == ["tflite:fp32", "tflite:int8", "pte:fp32", "pte:int8"]
    assert cfg.source() == f"{REPO / 'examples' / 'torch_digits.py'}:build"
    assert p.data.calib == "digits:train" and p.devices == ["local"]
    assert p.targets[1].max_drop == {"top1": 1.0, "agreement": 2.0}


def test_example_pi_project_loads():
    p = load_config(REPO / "examples" / "edgeship-pi.toml").project
    assert p.devices == ["local", "emu:rpi4"] and {t.format for t in p.targets} == {"tflite"}


def test_defaults_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    p = cfg.project
    assert p.measure.runs == 100 and p.measure.warmup == 10 and p.devices == ["local"]
    assert p.gates.regression.latency_rel == 0.20 and p.gates.regression.latency_abs_ms == 0.05
    assert cfg.source() == f"{tmp_path / 'net.py'}:build"
    assert cfg.data(p.data.eval) == str(tmp_path / "calib.npz") and cfg.data("digits:train") == "digits:train"
    assert p.report.formats == ["json", "junit", "markdown", "html"]


def test_pyproject_tool_table(tmp_path):
    text = GOOD.replace("[model]", "[tool.edgeship.model]").replace("[data]", "[tool.edgeship.data]")
    text = text.replace("targets =", "[tool.edgeship]\ntargets =")
    cfg = load_config(write(tmp_path, "[project]\nname='x'\n" + text, "pyproject.toml"))
    assert cfg.project.targets[0].key == "tflite:int8"
    assert cfg.path == (tmp_path / "pyproject.toml").resolve()


def test_found_from_a_folder(tmp_path):
    write(tmp_path, GOOD)
    (tmp_path / "sub").mkdir()
    assert load_config(tmp_path / "sub").path == (tmp_path / "edgeship.toml").resolve()


def test_unknown_key_suggests_and_names_file_and_key(tmp_path):
    msg = error_of(write(tmp_path, GOOD + "[gates.latency]\np50ms = 3\n"))
    assert str(tmp_path / "edgeship.toml") in msg
    assert "unknown key 'gates.latency.p50ms'. Did you mean 'p50_ms'?" in msg


def test_unknown_section_suggests(tmp_path):
    msg = error_of(write(tmp_path, GOOD + "[gates.acuracy]\nmin_top1 = 90\n"))
    assert "unknown key 'gates.acuracy'. Did you mean 'accuracy'?" in msg


def test_key_under_the_wrong_table_says_where_it_belongs(tmp_path):
    text = '[model]\nsource = "n.py:build"\ntargets = [{ format = "pte", recipe = "fp32" }]\n'
    msg = error_of(write(tmp_path, text))
    assert "unknown key 'model.targets'" in msg and "belongs at the top level" in msg
    assert "missing key 'targets'" in msg


def test_wrong_type_names_the_key_and_the_value(tmp_path):
    msg = error_of(write(tmp_path, GOOD + "[gates.latency]\np50_ms = \"fast\"\n"))
    assert "'gates.latency.p50_ms'" in msg and "valid number" in msg and "'fast'" in msg


def test_bad_recipe_in_a_target_names_its_index(tmp_path):
    msg = error_of(write(tmp_path, GOOD.replace('recipe = "int8"', 'recipe = "int9"')))
    assert "'targets[0].recipe'" in msg and "'int8'" in msg


def test_unknown_device_scheme_suggests(tmp_path):
    msg = error_of(write(tmp_path, 'devices = ["shh://pi@host"]\n' + GOOD))
    assert "unknown device 'shh://pi@host'. Did you mean 'ssh'?" in msg


def test_duplicate_target(tmp_path):
    text = GOOD.replace('targets = [{ format = "tflite", recipe = "int8" }]',
                        'targets = [{ format = "tflite", recipe = "int8" }, { format = "tflite", recipe = "int8" }]')
    assert "target tflite:int8 is listed twice" in error_of(write(tmp_path, text))


def test_not_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in error_of(write(tmp_path, "[model\n"))
    assert "config file not found" in error_of(tmp_path / "nope.toml")
    assert "no [tool.edgeship] table" in error_of(write(tmp_path, "[project]\nname='x'\n", "pyproject.toml"))


def test_check_with_a_bad_config_exits_2(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write(tmp_path, GOOD + "[measure]\nrunz = 5\n"))])
    assert r.exit_code == 2, r.output
    assert "unknown key 'measure.runz'. Did you mean 'runs'?" in r.stderr and "Traceback" not in r.stderr


def test_check_with_an_unreachable_device_exits_3_before_exporting(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write(tmp_path, 'devices = ["local", "ssh://pi@10.0.0.9"]\n' + GOOD))])
    assert r.exit_code == 3, r.output
    assert "device 'ssh://pi@10.0.0.9' cannot be reached" in r.stderr
    assert not (tmp_path / "edgeship-bundle").exists()


def test_check_with_a_bad_baseline_exits_2(tmp_path):
    (tmp_path / "old.json").write_text('{"schema": "edgeship.validate/1", "artifacts": []}')
    r = CliRunner().invoke(cli, ["check", str(write(tmp_path, GOOD)), "--baseline", str(tmp_path / "old.json")])
    assert r.exit_code == 2 and "is not an edgeship check report" in r.stderr


def test_skip_export_without_a_bundle_exits_2(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write(tmp_path, GOOD)), "--skip-export"])
    assert r.exit_code == 2 and "no bundle at" in r.stderr and "without --skip-export" in r.stderr
