"""`edgeship run --plan plan.json --results DIR`: run a plan's jobs into a results store (engine: edgeship/jobs/run.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("run")
@click.option("--plan", "plan", required=True, type=click.Path(path_type=Path), help="The plan `edgeship plan` wrote.")
@click.option("--results", required=True, type=click.Path(path_type=Path),
              help="The results store: a folder, local or on a mount every shard shares.")
@click.option("--shard", metavar="I/N", help="Run shard I of N (1..N), e.g. --shard 2/4.")
@click.option("--job", "job", metavar="KEY", help="Run one job (its key from plan.json, or a unique prefix).")
@click.option("--jobs", "jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Run the whole plan here as N shards in N parallel processes.")
@click.option("--config", type=click.Path(path_type=Path),
              help="The project file, when it is not at the path the plan names (a checkout elsewhere).")
@click.pass_context
def command(ctx, plan, results, shard, job, jobs, config):
    """Run the jobs of a plan into a results store: shard I/N, one job, or all of them.

    A job whose key already has a result is skipped, so running a shard again does no work, and a
    failed run is finished by running it again. A job's dependency (a validation's export) is run
    here or, while another shard runs it, waited for. Shards may race: each job is claimed with an
    exclusive create before it runs and stored by one rename, so it runs once. A validation holds an
    exclusive lease on its device while it times (a lock file for local and emu:*, a lock directory on
    the board for ssh:// and adb), so two shards never time on one device at once; exports run in
    parallel. The plan is made again here first: different tool versions or a changed project stop
    the run (exit 2) instead of storing results under keys that do not describe them.

    \b
    Examples:
      edgeship run --plan plan.json --shard 1/3 --results /mnt/shared/edgeship-results
      edgeship run --plan plan.json --results store/ --jobs 2      # 2 local shards, in parallel
    """
    from edgeship.console import is_quiet
    from edgeship.jobs.run import RunOptions, run

    run(RunOptions(plan, results, shard, job, jobs, config, ctx.obj["verbose"], is_quiet()))
