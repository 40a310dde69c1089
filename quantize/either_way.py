"""`auto` for a float-model rewrite (CLE, bias correction): convert the model without and with the
rewrite, run both artifacts on the golden inputs, and keep the one whose weakest output has the
higher SNR (the plain model on a tie)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeship.quantize.calibration import run_artifact, samples_of, score


@dataclass
class Outcome:
    applied: bool  # the rewritten model's artifact was kept
    snr_db_without: float
    snr_db_with: float
    result: object  # what the kept conversion returned


def convert_either_way(convert, without, with_, recipe, calib, out_path: Path, options, target: str,
                       reference, inputs) -> Outcome:
    """Write to `out_path` whichever of the two conversions measures better; the other is discarded."""
    tried = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-either-") as tmp:
        for name, m in (("without", without), ("with", with_)):
            path = Path(tmp) / f"{name}{Path(out_path).suffix}"
            result = convert(m, recipe, calib, path, options)
            tried[name] = (score(reference, run_artifact(path, target, samples_of(inputs)))["snr_db"], path, result)
        best = max(tried, key=lambda k: (tried[k][0], k == "without"))
        shutil.copyfile(tried[best][1], out_path)
    return Outcome(best == "with", tried["without"][0], tried["with"][0], tried[best][2])
