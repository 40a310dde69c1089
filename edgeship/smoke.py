"""No dead artifacts: before a bundle is committed, each artifact runs once, in a child process
(the agent, as `validate` runs it), on the first golden sample, and is compared with the float
reference. An artifact that cannot load or run, or that answers with the wrong number or shape
of outputs or with NaN/Inf, fails its smoke run with the runtime's own words; export then keeps
it out of the bundle (under failed/), records why in the manifest and exits 1, while the other
artifacts are still written.
"""

from __future__ import annotations

import numpy as np

from edgeship.bundle import Golden
from edgeship.console import warn
from edgeship.errors import CheckFailed
from edgeship.metrics import cosine
from edgeship.runtime.local import LocalDevice

SMOKE_TIMEOUT_S = 300.0
FAILED_DIR = "failed"  # where a bundle keeps the artifacts that failed their smoke run


FP16_RANGE = ("; float16 holds no magnitude below 6e-8 or above 65504, so a constant such as a log's epsilon "
              "(1e-10) becomes 0 and the log -inf: keep this model fp32, or int8 where its route allows")


def smoke_run(path, signature: dict | None, golden: Golden, timeout: float = SMOKE_TIMEOUT_S) -> dict:
    """{"status": "pass"|"fail", "sample": 0, "cosine", "max_abs_error"} or {"status": "fail", "error"}."""
    inputs = [np.ascontiguousarray(a[:1]) for a in golden.inputs]
    run = LocalDevice().run_artifact(path, inputs, signature, warmup=0, runs=0, timeout=timeout)
    record: dict = {"sample": 0, "runtime": (run.result or {}).get("runtime")}
    if not run.ok:
        return {**record, "status": "fail", "error": run.error}
    refs = [r[:1] for r in golden.outputs]
    outs = list(run.outputs or [])
    if len(outs) != len(refs):
        return {**record, "status": "fail", "error": f"gave {len(outs)} outputs, the model has {len(refs)}"}
    for i, (o, r) in enumerate(zip(outs, refs)):
        if o.size != r.size:
            return {**record, "status": "fail",
                    "error": f"output {i} has shape {list(o.shape)}, the model's is {list(r.shape)}"}
        if o.dtype.kind == "f" and not np.isfinite(o).all():
            return {**record, "status": "fail", "error": f"output {i} holds NaN or Inf"}
    pairs = [(r.reshape(1, -1).astype(np.float64), o.reshape(1, -1).astype(np.float64)) for o, r in zip(outs, refs)]
    return {**record, "status": "pass", "cosine": min(cosine(r, o) for r, o in pairs),
            "max_abs_error": max(float(np.abs(r - o).max()) if r.size else 0.0 for r, o in pairs)}


def check(staging, record: dict, golden: Golden) -> bool:
    """Smoke-run the artifact `record` describes in the staging folder; record the result in it.
    A failure moves the file to failed/ and prints the runtime's words; returns whether it passed."""
    from pathlib import Path


    path = Path(staging) / record["path"]
    result = smoke_run(path, record.get("io"), golden)
    if result.get("error"):  # the staging folder is gone once the bundle is committed: name the file
        result["error"] = result["error"].replace(str(path.resolve()), path.name).replace(str(path), path.name)
        if record.get("recipe") == "fp16" and "NaN or Inf" in result["error"]:
            result["error"] += FP16_RANGE
    record["smoke"] = result
    if result["status"] == "pass":
        return True
    (Path(staging) / FAILED_DIR).mkdir(exist_ok=True)
    path.replace(Path(staging) / FAILED_DIR / path.name)
    record["path"] = f"{FAILED_DIR}/{path.name}"
    warn(f"{path.name} failed its smoke run on golden sample 0: {result['error']}")
    return False


def unreadable(staging, path, fmt: str, recipe: str, error: str) -> dict:
    """The record of an artifact that could not even be inspected; the file moves to failed/."""
    from pathlib import Path


    path = Path(path)
    error = error.replace(str(path.resolve()), path.name).replace(str(path), path.name)
    (Path(staging) / FAILED_DIR).mkdir(exist_ok=True)
    path.replace(Path(staging) / FAILED_DIR / path.name)
    warn(f"{path.name} cannot be read: {error}")
    return {"path": f"{FAILED_DIR}/{path.name}", "format": fmt, "recipe": recipe,
            "smoke": {"sample": 0, "status": "fail", "error": f"load: {error}"}}


def raise_if_failed(failed: list[dict], bundle) -> None:
    if not failed:
        return

    words = "; ".join(f"{r['path'].split('/')[-1]}: {r['smoke']['error']}" for r in failed)
    raise CheckFailed(
        f"{len(failed)} artifact(s) could not run, so they were not shipped: {words}",
        hint=f"the artifacts that ran are in {bundle}; the failed ones are in {bundle}/{FAILED_DIR}/ and listed "
        "under failed_artifacts in manifest.json",
    )
