"""`edgeship plan CONFIG --out plan.json`: the project's check cut into jobs (engine: edgeship/jobs/plan.py)."""

from __future__ import annotations

from pathlib import Path

import click

EMITS = ("github-matrix", "k8s-indexed-job")  # edgeship/jobs/emit.py's, named here so --help imports nothing


@click.command("plan")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Where to write the plan (JSON).")
@click.option("--emit", type=click.Choice(EMITS), help="Also print the plan as work for an engine: a GitHub "
              "Actions matrix (one line of JSON) or a Kubernetes Indexed Job (YAML), on stdout.")
@click.option("--shards", type=click.IntRange(1), help="How many shards --emit spreads the jobs over "
              "(default: one per export, at most 4).")
@click.option("--image", default="ghcr.io/OWNER/edgeship:latest", show_default=True,
              help="k8s-indexed-job: the container image (edgeship, its tools and the project at /work).")
@click.option("--results-claim", default="edgeship-results", show_default=True,
              help="k8s-indexed-job: the ReadWriteMany PersistentVolumeClaim every shard stores results in.")
def command(config, out, emit, shards, image, results_claim):
    """Cut the check of CONFIG (edgeship.toml or pyproject.toml) into jobs: one export per target
    (format x recipe) and one validation per (target, device), which needs its export. Each job's key
    is a hash of everything its result depends on: the model and data files' bytes, the options, and
    the versions of edgeship and the tools (torch, executorch, litert-torch, ai-edge-litert,
    onnxruntime, tensorflow), so a toolchain upgrade makes new keys and no old result is reused.

    \b
    Then run the shards anywhere that shares one results folder, and merge:
      edgeship plan edgeship.toml --out plan.json
      edgeship run --plan plan.json --shard 1/2 --results store/    # on runner 1
      edgeship run --plan plan.json --shard 2/2 --results store/    # on runner 2
      edgeship merge store/ --plan plan.json --report-dir report/  # check's gates, reports, exit code
    \b
    For CI: --emit github-matrix (see examples/github-actions-sharded.yml) or --emit k8s-indexed-job
    (examples/k8s-indexed-job.yaml).
    """
    import sys

    from edgeship.console import info
    from edgeship.jobs import emit as emitters
    from edgeship.jobs.plan import plan_config, write_plan

    cfg, plan = plan_config(config)
    write_plan(plan, out)
    exports = sum(j["kind"] == "export" for j in plan["jobs"])
    info(f"plan: {exports} export and {len(plan['jobs']) - exports} validation jobs -> {out}")
    n = shards or emitters.default_shards(plan)
    if emit == "github-matrix":
        sys.stdout.write(emitters.github_matrix(plan, n) + "\n")
    elif emit == "k8s-indexed-job":
        try:
            rel = str(cfg.path.relative_to(Path.cwd().resolve()))
        except ValueError:
            rel = str(cfg.path)
        sys.stdout.write(emitters.k8s_indexed_job(plan, n, image=image, config=rel, results_claim=results_claim,
                                                  plan_json=Path(out).read_text()))
