"""`edgeship check [CONFIG]`: export every target, validate it on every device, evaluate the gates,
write the reports (the engine: edgeship/checking.py). Exit 0 all gates pass; 1 a gate failed or
could not be measured; 2 bad configuration or input; 3 a device could not be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("check")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="A previous check's report.json to compare with.")
@click.option("--report-dir", type=click.Path(path_type=Path), help="Report folder (default: beside the bundle).")
@click.option("--skip-export", is_flag=True, help="Validate the bundles an earlier check wrote instead of exporting.")
@click.pass_context
def command(ctx, config, baseline, report_dir, skip_export):
    """Export every target of CONFIG (edgeship.toml or pyproject.toml; default: found from here),
    validate each on every device, evaluate the gates, write JSON, JUnit, Markdown and HTML reports.

    Exits 0 when every gate passes, 1 when a gate fails or could not be measured, 2 on a bad
    configuration, 3 when a device cannot be reached.
    """
    from edgeship.checking import CheckOptions, run_check

    outcome = run_check(CheckOptions(config, baseline, report_dir, skip_export, ctx.obj["verbose"]))
    if outcome.exit_code:
        sys.exit(outcome.exit_code)
