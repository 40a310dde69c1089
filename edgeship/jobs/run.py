"""`edgeship run`: run a plan's jobs (a shard, one job, or all of them) into a results store.

A job whose key has a result is skipped. A job's dependencies are run first, or waited for while
another shard holds their claim. Each job is claimed (O_EXCL) before it runs and stored by one
rename, so shards that race for a key run it once. A validation job holds its device's lease while
it times. Before anything runs, the plan is made again here: a job runs only under the key it would
have on this machine, so a result never stands for other tool versions or another project file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeship.bundle import read_bundle
from edgeship.checking import open_devices, target_result
from edgeship.config import LoadedConfig, load_config
from edgeship.console import info
from edgeship.context import runtime_choices
from edgeship.errors import CheckFailed, InputError
from edgeship.jobs import leases
from edgeship.jobs.plan import by_key, load_plan, make_plan, parse_shard, shard_jobs
from edgeship.jobs.store import Store
from edgeship.reports.tables import json_default

POLL_S = 0.5


@dataclass
class RunOptions:
    plan: Path
    results: Path
    shard: str | None = None  # "I/N"
    job: str | None = None  # one key (or a unique prefix of one)
    jobs: int = 1  # local executor: run N shards as N processes
    config: Path | None = None  # the project file, where it is not at the plan's path
    verbose: bool = False
    quiet: bool = False


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the store (or stored by another shard meanwhile)


def _plain(value):
    return json.loads(json.dumps(value, default=json_default))


def check_plan(plan: dict, cfg: LoadedConfig) -> None:
    """The plan's keys are the keys this machine would make: same tool versions, same project."""
    here = make_plan(cfg)
    if here["versions"] != plan["versions"]:
        a, b = plan["versions"], here["versions"]
        diff = [f"{k} {a.get(k, 'absent')} in the plan, {b.get(k, 'absent')} here" for k in sorted({*a, *b})
                if a.get(k) != b.get(k)]
        raise InputError("this machine's tool versions differ from the plan's: " + "; ".join(diff),
                         hint="a result is keyed by the tools that made it: install the plan's versions, "
                              "or plan again here")
    if [j["key"] for j in here["jobs"]] != [j["key"] for j in plan["jobs"]]:
        raise InputError(f"the project changed since the plan was made ({cfg.path}: its model, data or "
                         "options, or a file they name)", hint="plan again: edgeship plan CONFIG --out plan.json")


def load(opts: RunOptions) -> tuple[dict, LoadedConfig]:
    plan = load_plan(opts.plan)
    config = opts.config or Path(plan["config"])
    if not opts.config and not config.exists():
        raise InputError(f"the plan's project file '{config}' is not here",
                         hint="pass it: --config path/to/edgeship.toml (a checkout elsewhere)")
    cfg = load_config(config)
    check_plan(plan, cfg)
    return plan, cfg


def run(opts: RunOptions) -> RunSummary:
    if opts.jobs > 1:
        if opts.shard or opts.job:
            raise InputError("--jobs N runs the whole plan as N local shards; pass it without --shard or --job")
        return run_local(opts)
    plan, cfg = load(opts)
    store = Store(opts.results)
    jobs = by_key(plan)
    if opts.job:
        found = [k for k in jobs if k.startswith(opts.job)]
        if len(found) != 1:
            raise InputError(f"no job '{opts.job}' in {opts.plan}" if not found else
                             f"'{opts.job}' names {len(found)} jobs: give more of the key")
        mine, label = [jobs[found[0]]], f"job {found[0][:12]}"
    elif opts.shard:
        i, n = parse_shard(opts.shard)
        mine, label = shard_jobs(plan, i, n), f"shard {i}/{n}"
    else:
        mine, label = plan["jobs"], "all jobs"
    summary = RunSummary()
    runner = _Runner(plan, cfg, store, jobs, summary, opts.verbose)
    t0 = time.perf_counter()
    for job in sorted(mine, key=lambda j: j["kind"] != "export"):  # exports first: others may wait on them
        runner.ensure(job)
    info(f"{label}: {len(summary.ran)} ran, {len(summary.skipped)} already in the store "
         f"({time.perf_counter() - t0:.0f} s) -> {store.root}")
    return summary


def run_local(opts: RunOptions) -> RunSummary:
    """The local executor: N shards as N processes of this same command, one results store."""
    load(opts)  # bad plan or config: one error here, not N
    Store(opts.results)
    flags = ["-v"] if opts.verbose else []
    flags += ["-q"] if opts.quiet else []
    procs = []
    for i in range(1, opts.jobs + 1):
        cmd = [sys.executable, "-m", "edgeship", *flags, "run", "--plan", str(opts.plan), "--results",
               str(opts.results), "--shard", f"{i}/{opts.jobs}"] + (["--config", str(opts.config)] if opts.config else [])
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    bad = [c for c in codes if c]
    if bad:
        from edgeship.errors import EdgeshipError

        err = EdgeshipError(f"{len(bad)} of {opts.jobs} shards failed (exit {', '.join(map(str, bad))})",
                            hint="their errors are above; run again to finish: done jobs are skipped")
        err.exit_code = max(bad) if max(bad) < 128 else 1
        raise err
    return RunSummary()


class _Runner:
    def __init__(self, plan: dict, cfg: LoadedConfig, store: Store, jobs: dict, summary: RunSummary, verbose: bool):
        self.plan, self.cfg, self.store, self.jobs, self.summary, self.verbose = plan, cfg, store, jobs, summary, verbose

    def ensure(self, job: dict) -> None:
        """JOB's result in the store: there already, run here, or waited for while another shard runs it."""
        key = job["key"]
        if self.store.done(key):
            if key not in self.summary.ran:
                self.summary.skipped.append(key)
            return
        for dep in job["needs"]:
            self.ensure(self.jobs[dep])
        said = False
        while True:
            claim = self.store.try_claim(key)
            if claim is not None:
                with claim:
                    if self.store.done(key):  # stored by another shard between the check and the claim
                        self.summary.skipped.append(key)
                        return
                    self._execute(job)
                self.summary.ran.append(key)
                return
            if self.store.done(key):
                self.summary.skipped.append(key)
                return
            if not said:
                info(f"waiting for {_name(job)}: another shard is running it")
                said = True
            time.sleep(POLL_S)

    def _execute(self, job: dict) -> None:
        info(f"[bold]job[/] {_name(job)} ({job['key'][:12]})")
        staging = self.store.staging(job["key"])
        t0, started = time.perf_counter(), time.time()
        try:
            body = self._export(job, staging) if job["kind"] == "export" else self._validate(job)
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        result = _plain({"key": job["key"], "kind": job["kind"], "target": job["target"], "device": job.get("device"),
                         "model": self.plan.get("model"), "versions": self.plan["versions"],
                         "host": socket.gethostname(), "pid": os.getpid(), "started_unix": started,
                         "seconds": round(time.perf_counter() - t0, 3), **body})
        stored = self.store.commit(job["key"], staging, result)
        self.store.journal("ran" if stored else "dropped", job["key"])
        if not stored:
            info(f"{_name(job)}: another shard stored it first; this result is dropped")

    def _export(self, job: dict, staging: Path) -> dict:
        from edgeship.pipeline import ExportRequest, export

        cfg, p = self.cfg, self.cfg.project
        verdict = None
        try:
            res = export(ExportRequest(
                source=cfg.source(), out=staging / "bundle", targets=[job["format"]], recipes=job["recipe"],
                calib=cfg.data(p.data.calib), eval=cfg.data(p.data.eval), calib_samples=p.data.calib_samples,
                golden_samples=p.data.golden_samples, framework=p.model.framework, force=True,
                trust_source=p.model.trust_source, name=p.model.name, verbose=self.verbose,
                reference_device=p.model.reference_device))
            manifest = res.manifest
        except CheckFailed as e:  # the bundle is written; the gates judge it at merge, as check's do
            info(f"export's verdict on {job['target']}: {e.message}; the gates judge the artifact at merge")
            verdict = e.message
            manifest = read_bundle(staging / "bundle").manifest
        return {"verdict": verdict, "inputs_sha256": manifest.get("inputs_sha256"), "tools": manifest.get("tools")}

    def _validate(self, job: dict) -> dict:
        from edgeship.validation import ValidateRequest, not_shipped, validate

        cfg, m = self.cfg, self.cfg.project.measure
        bundle = self.store.path(job["needs"][0]) / "bundle"
        uri = job["device"]
        with runtime_choices(adb_runners=[cfg.resolve(r) for r in m.adb_runners]):
            device = open_devices([uri])[uri]
        have = {f"{a['format']}:{a['recipe']}" for a in read_bundle(bundle).artifacts}
        if job["target"] not in have:  # export could not make it: an error row, as check writes
            records = not_shipped(read_bundle(bundle).manifest, uri, device.emulated, job["target"])
            if not records:
                raise InputError(f"the stored bundle '{bundle}' has no artifact for {job['target']}",
                                 hint="remove that folder from the store and run again")
            return {"records": [target_result(records[0], m.threads)], "context": None}
        with leases.lease(uri, device):
            records, context = validate(ValidateRequest(bundle, None, uri, m.threads, m.warmup, m.runs, m.timeout,
                                                        verbose=self.verbose, metric=cfg.metric()), device=device)
        records = [target_result(r, m.threads) for r in records if f"{r['format']}:{r['recipe']}" == job["target"]]
        return {"records": records, "context": {**context, "bundle": str(bundle)}}


def _name(job: dict) -> str:
    return f"export {job['target']}" if job["kind"] == "export" else f"validate {job['target']} on {job['device']}"
