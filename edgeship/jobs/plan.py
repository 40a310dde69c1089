"""`edgeship plan`: a project file cut into jobs, each keyed by what its result depends on.

One export job per target (format x recipe) and one validation job per (target, device), which
needs its target's export. A job's key is the sha256 of everything its result depends on:

    export      the model source file and the data files (their bytes, not their paths), the model,
                data and target options of the project file, the versions of edgeship and the tools
    validate    its export's key, the device, the [measure] options, the metric (and its module's
                bytes), the adb runners' bytes, the tool versions

so a changed model, option or tool version is a new key, and a result is never reused across tool
versions. The gates are not in any key: they are judged at merge, from the stored results.

Shards: the jobs of one export (the export and its validations) go to one shard, round robin in
plan order; `--shard I/N` runs shard I (1..N).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path

from edgeship.config import LoadedConfig, load_config
from edgeship.errors import InputError
from edgeship.hashing import sha256_file
from edgeship.version import __version__

PLAN_SCHEMA = "edgeship.plan/1"
# the tools whose version changes what a job computes (importlib.metadata: no framework is imported);
# litert-torch was ai-edge-torch, tensorflow-cpu is tensorflow's CPU wheel: whichever is installed
TOOLS = ("torch", "executorch", "torchao", "litert-torch", "ai-edge-torch", "ai-edge-litert", "onnx", "onnxruntime",
         "onnxscript", "tf2onnx", "tensorflow", "tensorflow-cpu", "keras", "numpy")


def tool_versions() -> dict[str, str]:
    """{package: version} of edgeship and every installed tool of TOOLS."""
    out = {"edgeship": __version__}
    for pkg in TOOLS:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _files_sha256(spec: str | None) -> dict[str, str]:
    """{file name: sha256} of the file(s) a spec reads ('x.py:fn' -> x.py, a path, a folder's files);
    none for the built-in 'digits'. Bytes, not paths: a checkout elsewhere gives the same keys."""
    if not spec:
        return {}
    head, sep, _ = spec.rpartition(":")
    path = Path(head if sep and head.endswith(".py") else spec)
    if path.is_dir():
        return {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file()}
    return {path.name: sha256_file(path)} if path.is_file() else {}


def _metric_spec(cfg: LoadedConfig) -> str | None:
    return cfg.project.gates.accuracy.metric


def make_plan(cfg: LoadedConfig, versions: dict[str, str] | None = None) -> dict:
    """The plan of a loaded project: jobs with keys and dependencies (versions: the tool versions the
    keys are made with; default this environment's)."""
    p = cfg.project
    versions = dict(versions or tool_versions())
    model = p.model.model_dump(exclude={"trust_source"})
    data = p.data.model_dump()
    inputs = {"source": _files_sha256(cfg.source()), "calib": _files_sha256(cfg.data(p.data.calib)),
              "eval": _files_sha256(cfg.data(p.data.eval))}
    measure = p.measure.model_dump(exclude={"adb_runners"})
    runners = {r: _files_sha256(str(cfg.resolve(r))) for r in p.measure.adb_runners}
    metric = cfg.metric()
    metric_files = _files_sha256(metric.partition("@")[2] or metric) if metric and ".py:" in metric else {}
    jobs = []
    for t in p.targets:
        export_key = _digest({"job": "export", "model": model, "data": data, "inputs": inputs, "format": t.format,
                              "recipe": t.recipe, "versions": versions})
        jobs.append({"key": export_key, "kind": "export", "target": t.key, "format": t.format, "recipe": t.recipe,
                     "needs": []})
        for uri in p.devices:
            key = _digest({"job": "validate", "export": export_key, "device": uri, "measure": measure,
                           "runners": runners, "metric": _metric_spec(cfg), "metric_files": metric_files,
                           "versions": versions})
            jobs.append({"key": key, "kind": "validate", "target": t.key, "format": t.format, "recipe": t.recipe,
                         "device": uri, "needs": [export_key]})
    return {"schema": PLAN_SCHEMA, "config": str(cfg.path), "model": p.model.name, "versions": versions,
            "jobs": jobs}


def plan_config(config: Path | None, versions: dict[str, str] | None = None) -> tuple[LoadedConfig, dict]:
    cfg = load_config(config)
    return cfg, make_plan(cfg, versions)


def write_plan(plan: dict, out: Path) -> None:
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(plan, indent=2) + "\n")
        os.replace(tmp, out)
    except OSError as e:
        raise InputError(f"cannot write the plan to '{out}': {e.strerror}") from None


def load_plan(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"plan not found: '{path}'", hint="make one: edgeship plan edgeship.toml --out plan.json")
    try:
        plan = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a plan (not JSON: {e})") from None
    if not isinstance(plan, dict) or plan.get("schema") != PLAN_SCHEMA:
        raise InputError(f"{path}: not an edgeship plan (schema {PLAN_SCHEMA} expected)",
                         hint="make one: edgeship plan edgeship.toml --out plan.json")
    return plan


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise InputError(f"bad shard '{text}': expected I/N, e.g. --shard 1/3 (shard 1 of 3)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise InputError(f"bad shard '{text}': I must be 1..N (shards are numbered from 1)",
                         hint="Kubernetes' JOB_COMPLETION_INDEX counts from 0: --shard $((JOB_COMPLETION_INDEX + 1))/N")
    return i, n


def shard_jobs(plan: dict, index: int, count: int) -> list[dict]:
    """Shard INDEX of COUNT: every COUNT-th export (from the INDEX-th) with its validations."""
    exports = [j["key"] for j in plan["jobs"] if j["kind"] == "export"]
    mine = {k for n, k in enumerate(exports) if n % count == index - 1}
    return [j for j in plan["jobs"] if (j["key"] if j["kind"] == "export" else j["needs"][0]) in mine]


def by_key(plan: dict) -> dict[str, dict]:
    return {j["key"]: j for j in plan["jobs"]}
