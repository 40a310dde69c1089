"""The long fuzz run: mutated .tflite and .pte files through `inspect` and the agent.

    .venv/bin/python bench/fuzz.py [--cases 1000] [--seed 1234] [--formats tflite,pte] [--keep DIR]

Exports the torch digits CNN (fp32, int8) to both formats, then for each case mutates one of
them (bit flips, truncations, spliced headers, zeroed or duplicated blocks; for .pte a quarter
of the cases flip bits in the XNNPACK delegate payload: bench/mutations.py),
inspects it (child process) and runs it through the agent (child process, timeout). Prints the
outcome counts per format and per mutation; a case where edgeship itself crashed, or printed an
error of more than one line, is a finding and makes the exit status 1. Runtime crashes contained
in the child are counted (and kept with --keep, to plant in tests).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_outcome(run) -> tuple[str, bool]:
    """(outcome, is_finding) of one agent run: a run error of more than one line is a finding, as
    an inspect error of more than one line is (tests/test_fuzz.py checks this)."""
    if run.ok:
        return "run: ok", False
    if "\n" in (run.error or "") or not run.error:
        return "run: FINDING (multi-line or empty error)", True
    if "crashed" in run.error:
        return "run: runtime crashed (contained)", False
    if "timed out" in run.error:
        return "run: hung (timed out, contained)", False
    return "run: clear error", False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="cases per format")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--formats", default="tflite,pte")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--keep", type=Path, help="copy mutants that crashed the runtime here")
    args = ap.parse_args()

    from edgeship.bundle import read_bundle
    from edgeship.errors import ArtifactError
    from mutations import mutate, mutate_delegate_payload
    from edgeship.inspect import inspect_file
    from edgeship.pipeline import ExportRequest, export
    from edgeship.runtime.local import LocalDevice

    findings = 0
    with tempfile.TemporaryDirectory(prefix="edgeship-fuzz-") as tmp:
        tmp = Path(tmp)
        export(ExportRequest(source=f"{REPO / 'examples' / 'torch_digits.py'}:build", out=tmp / "seeds",
                             recipes="fp32,int8", calib="digits:train", golden_samples=4))
        seeds = read_bundle(tmp / "seeds")
        inputs = [a[:1] for a in seeds.golden().inputs]
        device = LocalDevice()
        for fmt in args.formats.split(","):
            rng = random.Random(args.seed)
            records = [a for a in seeds.artifacts if a["format"] == fmt]
            donor = next(seeds.artifact_path(a).read_bytes() for a in seeds.artifacts if a["format"] != fmt)
            outcomes, by_kind, crashes = Counter(), Counter(), []
            t0 = time.perf_counter()
            for case in range(args.cases):
                rec = records[case % len(records)]
                original = seeds.artifact_path(rec).read_bytes()
                if fmt == "pte" and case % 4 == 3:  # a quarter aimed at the XNNPACK payload native code reads
                    kind, data = "delegate_bitflip", mutate_delegate_payload(original, rng)
                else:
                    kind, data = mutate(original, rng, donor)
                path = tmp / f"mutant.{fmt}"
                path.write_bytes(data)
                try:
                    inspect_file(path, timeout=args.timeout)
                    outcomes["inspect: ok"] += 1
                except ArtifactError as e:
                    clear = "\n" not in e.message
                    outcomes["inspect: clear error" if clear else "inspect: FINDING (multi-line error)"] += 1
                    findings += not clear
                except Exception as e:  # edgeship itself failed: a finding
                    outcomes[f"inspect: FINDING {type(e).__name__}"] += 1
                    findings += 1
                run = device.run_artifact(path, inputs, rec["io"], warmup=0, runs=1, timeout=args.timeout)
                outcome, finding = run_outcome(run)
                findings += finding
                if outcome == "run: runtime crashed (contained)":
                    crashes.append((case, kind, rec["recipe"], run.error.split(";")[0]))
                    if args.keep:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (args.keep / f"{fmt}-seed{args.seed}-case{case}.{fmt}").write_bytes(data)
                outcomes[outcome] += 1
                by_kind[(kind, outcome)] += 1
                if (case + 1) % 25 == 0:
                    print(f"  .{fmt}: {case + 1}/{args.cases} cases, {time.perf_counter() - t0:.0f} s", flush=True)
            elapsed = time.perf_counter() - t0
            print(f"\n## .{fmt}: {args.cases} cases, seed {args.seed}, {elapsed:.0f} s")
            for k, v in sorted(outcomes.items()):
                print(f"  {k}: {v}")
            print("  by mutation:")
            for (kind, outcome), v in sorted(by_kind.items()):
                print(f"    {kind:16s} {outcome}: {v}")
            for case, kind, recipe, err in crashes:
                print(f"  crash: case {case} ({kind}, {recipe}): {err}")
    print(f"\nfindings (edgeship itself failed): {findings}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
