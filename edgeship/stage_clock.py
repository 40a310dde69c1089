"""Where one export's time went: seconds per stage, summed over the artifacts, in the manifest's
`timings` and in export's last line, so a user sees what a slow export spent its time on, and
bench/export_time.py can put the stages beside the bare converter's time.

Stages (each only where it ran):
  load                  the source model
  calibration data      --calib read and checked
  golden reference      the float model on the golden samples
  keep-float-ranges     the float model's activations measured (quantize/ranges.py)
  rewrite decisions     CLE / rounding / bias correction: their math and simulations (quantize/rewrites.py)
  rewrite trials        a rewrite's real trial: its extra conversions and their runs
  conversions           the converters, searches included, less the two rewrite stages
  smoke runs            each artifact run on the golden samples and judged

With `export --jobs N`, formats convert at once in forked children, each on its own clock; their stage
seconds are summed here, so the stages can add up to more than the total (`jobs` in the record).
"""

from __future__ import annotations

import contextlib
import time

ORDER = ("load", "calibration data", "golden reference", "keep-float-ranges", "rewrite decisions",
         "rewrite trials", "conversions", "smoke runs")


class Clock:
    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.jobs = 1  # formats converted at once (export --jobs): past load..rewrite decisions, stages overlap

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        if seconds > 0:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def record(self) -> dict:
        """{total, stages {name: seconds}} in ORDER; what no stage counted is 'other'."""
        total = time.perf_counter() - self.started
        stages = {k: round(self.seconds[k], 2) for k in ORDER if k in self.seconds}
        stages.update({k: round(v, 2) for k, v in self.seconds.items() if k not in stages})
        other = total - sum(self.seconds.values())
        if other >= 0.005:
            stages["other"] = round(other, 2)
        return {"total": round(total, 2), "stages": stages, **({"jobs": self.jobs} if self.jobs > 1 else {})}

    @staticmethod
    def line(record: dict) -> str:
        """'42.1 s: conversions 30.2, golden reference 5.0, ...' (the largest first; under 0.1 s left out)."""
        parts = sorted(((k, v) for k, v in record["stages"].items() if v >= 0.05), key=lambda kv: -kv[1])
        jobs = f" ({record['jobs']} formats at once: their stages add up past the total)" if record.get("jobs") else ""
        return f"{record['total']:.1f} s{jobs}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts)
