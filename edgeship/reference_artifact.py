"""What an artifact is compared with when it has no float model behind it.

`validate A --reference B`: B (a .tflite, .pte or .onnx, or a bundle folder) is the reference.
  B an artifact: B runs on the same device and the same inputs as A, and its outputs are the
    reference outputs. The inputs are --data's (with its labels), else the golden inputs of A's
    bundle (with their labels), else seeded random normal inputs of A's input shapes.
  B a bundle: its golden vectors (inputs, float outputs, labels) are the reference.
`validate A --data D` with A outside a bundle: D's labels are the only reference (task metrics
and top-1 against labels; no tensor metrics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeship.bundle import Bundle, Golden, find_bundle_of, read_bundle
from edgeship.console import info
from edgeship.data import load_data
from edgeship.errors import ArtifactError, InputError
from edgeship.inspect import inspect_file
from edgeship.model import IOSpec, TensorSpec, guess_layout
from edgeship.runtime.base import format_of


def artifact_io(path: Path) -> IOSpec:
    """The artifact's own I/O spec, read from the file (in a child process)."""
    d = inspect_file(path)

    def specs(items, prefix):
        return [TensorSpec(t.get("name") or f"{prefix}_{i}", tuple(t["shape"]), str(t.get("dtype", "float32")),
                           guess_layout(tuple(t["shape"]))) for i, t in enumerate(items)]

    return IOSpec(specs(d["inputs"], "input"), specs(d.get("outputs", []), "output"))


def random_inputs(path: Path) -> list[np.ndarray]:
    """Seeded random normal inputs of the artifact's own input shapes."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s.shape).astype(np.float32) for s in artifact_io(path).inputs]


def inputs_for(req, bundle: Bundle | None, first: Path) -> tuple[list[np.ndarray], object, str]:
    """(inputs, labels, where from) for comparing artifacts run side by side."""
    if req.data:

        io = IOSpec.from_dict(bundle.manifest["model"]["io"]) if bundle else artifact_io(first)
        ds = load_data(req.data, io)
        return ds.arrays, ds.labels, req.data
    if bundle is not None:
        g = bundle.golden()
        return g.inputs, g.labels, f"the golden inputs of {bundle.root}"
    return random_inputs(first), None, "random normal inputs"


def golden_from_reference(req, device, bundle: Bundle | None, first: Path) -> tuple[Golden, str]:
    ref = Path(req.reference)
    if not ref.exists():
        raise InputError(f"--reference not found: '{ref}'",
                         hint="pass the artifact (.tflite, .pte, .onnx) or the bundle folder to compare with")
    if ref.is_dir():
        if req.data:
            raise InputError("--reference BUNDLE brings its own inputs (its golden vectors); drop --data",
                             hint="or pass one of its artifacts as --reference to run it on --data")
        g = read_bundle(ref).golden()
        return g, f"{ref} golden vectors ({len(g)} samples)"
    if format_of(str(ref)) is None:
        raise InputError(f"--reference '{ref}' is not a .tflite, .pte or .onnx artifact, nor a bundle folder")
    inputs, labels, where = inputs_for(req, bundle, first)
    found = find_bundle_of(ref)
    record = found[1] if found else None

    info(f"[bold]reference[/] {ref.name} on {device.uri} over {where}")
    run = device.run_artifact(ref, inputs, (record or {}).get("io"), threads=req.threads, warmup=0, runs=1,
                              timeout=req.timeout, verbose=req.verbose)
    if not run.ok:
        raise ArtifactError(f"the reference {ref} did not run on {device.uri}: {run.error}")
    if run.outputs is None:
        raise ArtifactError(f"the reference {ref} returned no outputs on {device.uri} (timings only)",
                            hint="run the comparison on a device whose runner returns outputs (local, emu, ssh)")
    return Golden(list(inputs), list(run.outputs), labels), f"{ref.name} on {where}"


def labels_only(req, first: Path) -> tuple[Golden, str]:
    """--data for an artifact outside a bundle, without --reference: inputs and labels, no outputs."""
    ds = load_data(req.data, artifact_io(first))
    if ds.labels is None:
        raise InputError(f"--data {req.data} has no labels, and '{first}' has no float model to compare with",
                         hint="add labels to the data, or pass --reference B (the artifact to compare with)")
    return Golden(ds.arrays, None, ds.labels), f"labels of {req.data} (no reference outputs)"
