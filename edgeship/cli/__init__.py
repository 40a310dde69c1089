"""The command line: main.py (the group and its error handler) and one module per command.

Arrows point one way: main -> each command module -> the engines below (edgeship.pipeline,
edgeship.validation, edgeship.gates.budgets, edgeship.reports, runtime, ...). No engine imports the CLI;
the Python API (edgeship/__init__.py) calls the same engines.
"""

from edgeship.cli.main import cli, main

__all__ = ["cli", "main"]
