"""`edgeship --help` and `edgeship COMMAND --help` start fast: each runs in a fresh interpreter and
loads no numpy, pydantic, framework or runtime (the group imports a command module only when it is
run or its help shown, and the command modules import their engines inside the functions that run
them)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from edgeship.cli import cli

HEAVY = ("numpy", "pydantic", "torch", "tensorflow", "keras", "executorch", "onnxruntime", "onnx", "ai_edge_litert",
         "litert_torch", "matplotlib", "sklearn", "jax")
COMMANDS = ["export", "validate", "bench", "inspect", "diff", "demo", "check", "devices", "plan", "run", "merge"]
HELP_PAGES = [[], *([c] for c in COMMANDS), ["devices", "setup"], ["devices", "doctor"]]

CHILD = """
import json, resource, sys
from edgeship.cli import main
sys.argv = ["edgeship", *{argv!r}, "--help"]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code or 0
ru = resource.getrusage(resource.RUSAGE_SELF)
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("STARTUP " + json.dumps({{"code": code, "heavy": heavy, "cpu_s": ru.ru_utime + ru.ru_stime}}))
"""


def help_in_a_fresh_interpreter(argv: list[str]) -> tuple[str, dict]:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(argv=argv, heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *page, last = proc.stdout.rstrip().splitlines()
    assert last.startswith("STARTUP "), proc.stdout
    return "\n".join(page), json.loads(last.removeprefix("STARTUP "))


def test_every_command_has_its_help_page_checked():
    """A command added to the group gets a startup check here too."""
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    devices = cli.get_command(ctx, "devices")
    assert sorted(devices.list_commands(ctx)) == ["doctor", "setup"]
    for name in COMMANDS:
        assert cli.get_command(ctx, name).name == name


@pytest.mark.parametrize("argv", HELP_PAGES, ids=lambda a: " ".join(a) or "edgeship")
def test_help_loads_nothing_heavy(argv):
    page, child = help_in_a_fresh_interpreter(argv)
    print(f"{' '.join(['edgeship', *argv, '--help'])}: {child['cpu_s']:.3f} s CPU (interpreter start included)")
    assert child["code"] == 0
    assert page.startswith(" ".join(["Usage: edgeship", *argv, "[OPTIONS]"])), page[:200]
    assert child["heavy"] == []
    # a sanity bound, not a timing test: the heavy imports this guards against cost 0.4 s and more
    assert child["cpu_s"] < 1.0
