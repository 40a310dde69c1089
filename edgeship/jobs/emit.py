"""A plan as work for engines users already run: no scheduler of edgeship's own.

    github-matrix     {"include": [{"shard": "1/N", "jobs": k}, ...]}: one line for $GITHUB_OUTPUT, fed to
                      `strategy.matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`; each matrix job runs
                      `edgeship run --plan plan.json --shard ${{ matrix.shard }} --results DIR`
    k8s-indexed-job   a ConfigMap holding plan.json and an Indexed Job of N completions; the pod of index
                      JOB_COMPLETION_INDEX (0-based) runs shard JOB_COMPLETION_INDEX + 1 of N into a
                      ReadWriteMany volume, the results store every pod shares
"""

from __future__ import annotations

import json
import re

from edgeship.errors import InputError
from edgeship.jobs.plan import shard_jobs

EMITS = ("github-matrix", "k8s-indexed-job")
GITHUB_MATRIX_MAX = 256  # GitHub Actions: at most 256 jobs per matrix


def default_shards(plan: dict) -> int:
    return max(1, min(4, sum(j["kind"] == "export" for j in plan["jobs"])))


def github_matrix(plan: dict, shards: int) -> str:
    if shards > GITHUB_MATRIX_MAX:
        raise InputError(f"--shards {shards}: a GitHub Actions matrix has at most {GITHUB_MATRIX_MAX} jobs")
    include = [{"shard": f"{i}/{shards}", "jobs": len(shard_jobs(plan, i, shards))} for i in range(1, shards + 1)]
    return json.dumps({"include": include}, separators=(",", ":"))


def k8s_indexed_job(plan: dict, shards: int, *, image: str, config: str, results_claim: str,
                    plan_json: str) -> str:
    """Two YAML documents: the plan as a ConfigMap, and the Indexed Job that runs its shards."""
    name = "edgeship-" + re.sub(r"[^a-z0-9-]", "-", (plan.get("model") or "plan").lower()).strip("-")[:40]
    name = f"{name}-{_plan_id(plan)}"
    run = (f"edgeship --quiet run --plan /etc/edgeship/plan.json --config {config} --results /results "
           f"--shard $((JOB_COMPLETION_INDEX + 1))/{shards}")
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-plan"},
                  "data": {"plan.json": plan_json}}
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "edgeship"}},
        "spec": {
            "completionMode": "Indexed", "completions": shards, "parallelism": shards,
            "backoffLimit": shards,  # a failed shard is retried: done jobs are skipped, claimed ones waited for
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "edgeship"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "shard", "image": image, "workingDir": "/work",
                        "command": ["sh", "-c", run],
                        "volumeMounts": [{"name": "results", "mountPath": "/results"},
                                         {"name": "plan", "mountPath": "/etc/edgeship", "readOnly": True}],
                    }],
                    "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
                                {"name": "plan", "configMap": {"name": name + "-plan"}}],
                },
            },
        },
    }
    return "---\n" + to_yaml(config_map) + "---\n" + to_yaml(job)


def _plan_id(plan: dict) -> str:
    import hashlib

    return hashlib.sha256("".join(j["key"] for j in plan["jobs"]).encode()).hexdigest()[:8]


def to_yaml(value, indent: int = 0) -> str:
    """Block YAML for dicts, lists and scalars; strings as JSON strings (valid YAML double-quoted scalars)."""
    pad = "  " * indent
    if isinstance(value, dict):
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}{k}: {_scalar(v)}\n"
        return out
    if isinstance(value, list):
        out = ""
        for v in value:
            if isinstance(v, dict) and v:
                body = to_yaml(v, indent + 1)
                out += f"{pad}- " + body[len(pad) + 2:]
            elif isinstance(v, list) and v:
                out += f"{pad}-\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}- {_scalar(v)}\n"
        return out
    return f"{pad}{_scalar(value)}\n"


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return json.dumps(str(v))
