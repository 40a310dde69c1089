"""The `edgeship` command group and its one error handler.

Every command lives in a module of its own beside this one (export, validate, bench, inspect,
diff, demo, check, devices); COMMANDS names them, and the group imports one only when it runs or
shows its help (groups.LazyGroup). The group runs each command inside
`handle_errors`, the only place where an edgeship error becomes one red line, a hint and an
exit code: 0 ok; 1 a check failed (or a converter/runtime failed on the model); 2 bad usage or
bad input; 3 a device could not be reached; 130 interrupted. The command modules import their
engines (and the engines their frameworks) inside the functions that run them, so `edgeship --help`
and `edgeship COMMAND --help` load no numpy, pydantic or framework (tests/test_cli_startup.py).
"""

from __future__ import annotations

import contextlib
import sys

import click

from edgeship import interrupts
from edgeship.cli.groups import LazyGroup
from edgeship.console import err_console, error_line, set_quiet
from edgeship.errors import EdgeshipError
from edgeship.version import __version__

EPILOG = """\b
Examples:
  edgeship demo
  edgeship export examples/torch_digits.py:build --to tflite,pte --quant fp32,int8 \\
      --calib digits:train --eval digits:test --out bundles/digits
  edgeship validate bundles/digits --json report.json
  edgeship inspect bundles/digits/torch_digits.int8.tflite
  edgeship bench bundles/digits/torch_digits.int8.pte --threads 1,2
\b
Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 device unreachable.
"""


@contextlib.contextmanager
def handle_errors(verbose: bool):
    """Turn a user error into one red line with a hint and an exit code; keep tracebacks for bugs."""

    try:
        with interrupts.handled():  # Ctrl-C or a kill during export: unwind so staging folders are removed
            yield
    except EdgeshipError as e:
        if verbose:
            err_console().print_exception()
        error_line(e.message, e.hint)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console().print("[red]interrupted[/]: nothing was written")
        sys.exit(130)


COMMANDS = {
    "export": "edgeship.cli.export:command",
    "validate": "edgeship.cli.validate:command",
    "bench": "edgeship.cli.bench:command",
    "inspect": "edgeship.cli.inspect:command",
    "diff": "edgeship.cli.diff:command",
    "demo": "edgeship.cli.demo:command",
    "check": "edgeship.cli.check:command",
    "devices": "edgeship.cli.devices:group",
    "plan": "edgeship.cli.plan:command",
    "run": "edgeship.cli.run:command",
    "merge": "edgeship.cli.merge:command",
}


class EdgeshipGroup(LazyGroup):
    """The top group: every subcommand runs inside handle_errors."""

    def invoke(self, ctx):
        with handle_errors(bool(ctx.params.get("verbose"))):
            return super().invoke(ctx)


@click.group(cls=EdgeshipGroup, lazy_commands=COMMANDS, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeship")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and converter logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or step messages (CI logs).")
@click.pass_context
def cli(ctx, verbose, quiet):
    """Export PyTorch and Keras models to TFLite (LiteRT) and ExecuTorch, quantize them, and
    prove they still compute what the float model computes."""
    set_quiet(quiet)
    ctx.obj = {"verbose": verbose}


def main() -> None:
    try:
        cli(prog_name="edgeship")
    except click.exceptions.Exit as e:  # pragma: no cover - click handles these in standalone mode
        sys.exit(e.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
