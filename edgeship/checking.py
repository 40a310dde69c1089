"""The check engine: export every target of a project file, validate it on every device, evaluate
the gates, write the reports. `edgeship check` (cli/check.py) and `edgeship.check` (api.py) both
call run_check, whose outcome carries the exit code: 0 all gates pass, 1 a gate failed or could not
be measured (bad configuration or input and an unreachable device raise their errors: 2 and 3).

(Not edgeship/check.py: that submodule, once imported, would replace the API's `edgeship.check`
function as the package's attribute.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgeship.bundle import read_bundle
from edgeship.config import LoadedConfig, Project, load_config
from edgeship.console import info
from edgeship.context import runtime_choices
from edgeship.errors import EXIT_CHECK_FAILED, EXIT_OK, CheckFailed, DeviceError, DeviceUnreachable, InputError
from edgeship.gates.budgets import evaluate
from edgeship.gates.delegation import delegation_gates
from edgeship.gates.regression import load_baseline
from edgeship.pipeline import ExportRequest, export
from edgeship.reports import build_report, print_report, write_reports
from edgeship.runtime.device import open_device
from edgeship.status import Status
from edgeship.validation import ValidateRequest, validate


@dataclass
class CheckOptions:
    config: Path | None = None
    baseline: Path | None = None
    report_dir: Path | None = None
    skip_export: bool = False  # validate the bundles an earlier check wrote
    verbose: bool = False


@dataclass
class CheckOutcome:
    report: dict
    exit_code: int
    report_dir: Path
    written: dict


def open_devices(uris: list[str]) -> dict:
    """Every configured device, opened before the long export starts."""
    devices = {}
    for uri in uris:
        try:
            devices[uri] = open_device(uri)
            devices[uri].preflight()  # remote devices: connect now, not after exports
        except DeviceUnreachable:
            raise
        except (InputError, DeviceError) as e:
            hint = e.hint or "remove the device or run elsewhere"
            raise DeviceUnreachable(f"device '{uri}' cannot be reached: {e.message}", hint=hint) from None
    return devices


def bundle_groups(cfg: LoadedConfig) -> dict[Path, tuple[list[str], list[str]]]:
    """One export per set of formats sharing the same recipes: {bundle path: (formats, recipes)}."""
    by_recipes: dict[tuple, list[str]] = {}
    for t in cfg.project.targets:
        recipes = tuple(x.recipe for x in cfg.project.targets if x.format == t.format)
        if t.format not in by_recipes.setdefault(recipes, []):
            by_recipes[recipes].append(t.format)
    out = cfg.resolve(cfg.project.out)
    if len(by_recipes) == 1:
        (recipes, formats), = by_recipes.items()
        return {out: (formats, list(recipes))}
    return {out / "+".join(f): (f, list(r)) for r, f in by_recipes.items()}


def export_all(cfg: LoadedConfig, verbose: bool) -> None:
    """Export every bundle. Export's own verdict (an artifact below its recipe's floor, one that failed
    to convert or run: exit 1 for `export`) is said and recorded in the bundle; here the configured
    gates judge, so the check goes on to measure and report."""
    p = cfg.project
    for bundle, (formats, recipes) in bundle_groups(cfg).items():
        try:
            export(ExportRequest(
                source=cfg.source(), out=bundle, targets=formats, recipes=",".join(recipes),
                calib=cfg.data(p.data.calib), eval=cfg.data(p.data.eval), calib_samples=p.data.calib_samples,
                golden_samples=p.data.golden_samples, framework=p.model.framework, force=True,
                reuse_up_to_date=True, trust_source=p.model.trust_source, name=p.model.name, verbose=verbose,
                reference_device=p.model.reference_device,
            ))
        except CheckFailed as e:  # the bundle is written: the gates below judge its artifacts
            info(f"export's verdict on {bundle}: {e.message}; the check's gates judge the artifacts")


def measure_all(cfg: LoadedConfig, devices: dict, verbose: bool) -> tuple[list[dict], list[dict]]:
    """(results, contexts): one validate record per configured target x device."""
    m = cfg.project.measure
    wanted = {t.key for t in cfg.project.targets}
    results, contexts = [], []
    for bundle, (formats, recipes) in bundle_groups(cfg).items():
        if not (bundle / "manifest.json").exists():
            raise InputError(f"no bundle at '{bundle}' to validate",
                             hint="run edgeship check without --skip-export first")
        have = {f"{a['format']}:{a['recipe']}" for a in read_bundle(bundle).artifacts}
        missing = sorted(f"{f}:{r}" for f in formats for r in recipes if f"{f}:{r}" not in have)
        failed = read_bundle(bundle).manifest.get("failed_artifacts") or []
        # export could not make it: validate gives its error record per device (validation.not_shipped)
        missing = [key for key in missing if not any(key == f"{r.get('format')}:{r.get('recipe')}" for r in failed)]
        if missing:
            raise InputError(f"bundle '{bundle}' has no artifact for {', '.join(missing)}",
                             hint="run edgeship check without --skip-export")
        for uri, device in devices.items():
            req = ValidateRequest(bundle, None, uri, m.threads, m.warmup, m.runs, m.timeout, verbose=verbose,
                                  metric=cfg.metric())
            records, context = validate(req, device=device)
            contexts.append({**context, "bundle": str(bundle)})
            for r in records:
                if f"{r['format']}:{r['recipe']}" in wanted:
                    results.append(target_result(r, m.threads))
    return results, contexts


def target_result(record: dict, threads: int) -> dict:
    """A validate record as a check result: named by its target (format:recipe), its threads said."""
    return {**record, "target": f"{record['format']}:{record['recipe']}", "threads": record.get("threads") or threads}


def report_dir_for(cfg: LoadedConfig, opts: CheckOptions) -> Path:
    if opts.report_dir:
        return Path(opts.report_dir)
    if cfg.project.report.dir:
        return cfg.resolve(cfg.project.report.dir)
    out = cfg.resolve(cfg.project.out)
    return out.with_name(out.name + "-report")


def run_check(opts: CheckOptions) -> CheckOutcome:
    t0 = time.perf_counter()
    cfg = load_config(opts.config)
    project: Project = cfg.project
    baseline_path = opts.baseline or cfg.resolve(project.baseline)
    baseline = load_baseline(baseline_path) if baseline_path else None
    # adb_runners: like --runner, for the devices opened here (an adb device takes its runners when opened)
    with runtime_choices(adb_runners=[cfg.resolve(r) for r in project.measure.adb_runners]):
        devices = open_devices(project.devices)
    if not opts.skip_export:
        export_all(cfg, opts.verbose)
    results, contexts = measure_all(cfg, devices, opts.verbose)
    return judge(cfg, opts, results, contexts, baseline, t0, "check")


def judge(cfg: LoadedConfig, opts: CheckOptions, results: list[dict], contexts: list[dict], baseline: dict | None,
          t0: float, what: str) -> CheckOutcome:
    """The gates, the reports and the exit code for measured results: check's end, and `edgeship merge`'s
    (edgeship/jobs/merge.py) for results that sharded jobs wrote into a results store."""
    gates = evaluate(cfg.project, results, baseline) + delegation_gates(cfg.project, results)
    report = build_report(cfg, results, contexts, gates, baseline, time.perf_counter() - t0)
    out_dir = report_dir_for(cfg, opts)
    written = write_reports(report, out_dir, cfg.project.report.formats)
    print_report(report, written)
    info(f"{what} finished in {time.perf_counter() - t0:.0f} s")
    code = EXIT_OK if report["status"] == Status.PASS else EXIT_CHECK_FAILED
    return CheckOutcome(report, code, out_dir, written)
