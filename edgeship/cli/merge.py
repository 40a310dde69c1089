"""`edgeship merge DIR --plan plan.json`: check's gates and reports on stored results (engine: edgeship/jobs/merge.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("merge")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--plan", "plan", required=True, type=click.Path(path_type=Path), help="The plan the jobs ran.")
@click.option("--report-dir", type=click.Path(path_type=Path), help="Report folder (default: check's).")
@click.option("--baseline", type=click.Path(path_type=Path), help="A previous check's report.json to compare with.")
@click.option("--against", type=click.Path(path_type=Path), metavar="OLD_DIR",
              help="Another results store (e.g. before a toolchain upgrade): per target and device, the change in "
                   "accuracy and latency and which tool versions differ (toolchain.md, toolchain.json).")
@click.option("--config", type=click.Path(path_type=Path),
              help="The project file, when it is not at the path the plan names.")
@click.pass_context
def command(ctx, results, plan, report_dir, baseline, against, config):
    """Judge the results a plan's jobs stored in RESULTS exactly as `edgeship check` judges its own:
    the same gates, the same report.json, junit.xml, report.md and report.html, the same exit code
    (0 every gate passes, 1 a gate failed or could not be measured, 2 bad input: a job without a
    result, a result made with other tool versions).

    \b
    Example:
      edgeship merge store/ --plan plan.json --report-dir report/ --against old-store/
    """
    from edgeship.jobs.merge import MergeOptions, merge

    outcome = merge(MergeOptions(results, plan, report_dir, baseline, against, config, ctx.obj["verbose"]))
    if outcome.exit_code:
        sys.exit(outcome.exit_code)
