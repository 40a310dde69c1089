"""Stage-bisected parity: the same real inputs through each stage a model passes on its way to a
device, each stage's outputs held against the float model, and the first stage that leaves its
tolerance named (`edgeship diff --stages`).

    eager      the source model as its framework runs it (the reference every stage is held to)
    exported   torch.export's program (torch sources): what every torch route starts from
    quantized  the route's int8 graph simulated on the host (PT2E q/dq, the route's own quantizer and
               the bundle's calibration data; int8 artifacts of torch sources)
    artifact   the artifact, run by validate's runner on this host (a child process)
    device     the same artifact on --device (validate's runner there)

Tolerance: the float stages (exported) are held to the fp32 floor, the later ones to the artifact's
recipe floor (gates/floors.py: the floors export's verdict and validate use). A stage that cannot run
here is a row that says why, never a pass. Where it can, the report names the node: the layer that
loses most in the simulated int8 graph (quantize/rankers.py), or the step between two stages that
agree with each other less than with the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeship.errors import EdgeshipError, InputError, error_line
from edgeship.gates.floors import floors_for
from edgeship.quantize.calibration import score
from edgeship.runtime import measure

ORDER = ("eager", "exported", "quantized", "artifact", "device")


@dataclass
class Stage:
    name: str
    what: str
    ran: bool = False
    skipped: str = ""  # why it did not run
    vs_float: dict = field(default_factory=dict)  # score() against eager: weakest-output SNR and cosine
    vs_previous: dict = field(default_factory=dict)  # against the last stage that ran
    floor: float | None = None  # the cosine it is held to
    passed: bool | None = None
    node: str = ""  # where it leaves the tolerance, when that can be named


@dataclass
class Bisection:
    artifact: str
    recipe: str
    samples: int
    stages: list[Stage]
    first_failing: str | None
    node: str

    def to_dict(self) -> dict:
        return {**asdict(self), "stages": [asdict(s) for s in self.stages]}


def bisect(model, artifact: Path, recipe: str, feeds: list[list[np.ndarray]], calib=None, device=None,
           floors: dict | None = None, kept_float=(), log=print) -> Bisection:
    """Run FEEDS (samples, each a list of batch-1 arrays) through every stage of ARTIFACT's way from
    MODEL; DEVICE: an opened runtime Device for the last stage (None: skipped)."""
    target = Path(artifact).suffix.lstrip(".")
    arrays = measure.as_arrays(feeds)
    float_floor = floors_for("fp32", floors).get("cosine")
    recipe_floor = floors_for(recipe, floors).get("cosine")
    stages: list[Stage] = []
    outputs: dict[str, list[np.ndarray]] = {}

    def record(stage: Stage, run, floor):
        stages.append(stage)
        stage.floor = floor
        try:
            got = run()
        except Skip as e:
            stage.skipped = str(e)
            return
        except EdgeshipError as e:  # the artifact could not run there, torch.export or PT2E failed
            stage.skipped, stage.passed = f"could not run: {e.message}", False
            return
        except Exception as e:  # noqa: BLE001 - a stage that crashes is that stage's failure, in its words
            if stage.name == "eager":  # nothing to hold the others against
                raise InputError(f"the float model failed on the inputs: {error_line(e, with_type=True)}",
                                 hint="check --data against the model's inputs (--verbose: the traceback)") from e
            stage.skipped, stage.passed = f"could not run: {error_line(e, with_type=True)}", False
            return
        stage.ran = True
        outputs[stage.name] = got
        reference = outputs["eager"]
        stage.vs_float = score(reference, got)
        before = [s for s in stages[:-1] if s.ran]
        if before:
            stage.vs_previous = {"stage": before[-1].name, **score(outputs[before[-1].name], got)}
        stage.passed = floor is None or stage.vs_float["cosine"] >= floor

    log(f"stage eager: {model.name} ({model.framework})")
    record(Stage("eager", f"the {model.framework} model as its framework runs it"), lambda: _eager(model, feeds),
           None)
    log("stage exported: torch.export")
    record(Stage("exported", "torch.export's program"), lambda: _exported(model, feeds), float_floor)
    log("stage quantized: the route's int8 graph simulated on the host")
    record(Stage("quantized", f"the {target} route's int8 graph simulated on the host (PT2E)"),
           lambda: _quantized(model, target, recipe, calib, feeds, tuple(kept_float)), recipe_floor)
    log(f"stage artifact: {Path(artifact).name} on this host")
    record(Stage("artifact", f"{Path(artifact).name} on this host (validate's runner)"),
           lambda: measure.outputs(artifact, arrays), recipe_floor)
    uri = getattr(device, "uri", None)
    log(f"stage device: {uri or 'none given (--device)'}")
    record(Stage("device", f"{Path(artifact).name} on {uri}" if uri else "the artifact on a device"),
           lambda: _on_device(device, artifact, arrays), recipe_floor)

    first = next((s for s in stages if s.passed is False), None)
    node = ""
    if first is not None:
        node = _node(first, stages, model, target, calib, feeds)
        first.node = node
    return Bisection(str(artifact), recipe, len(feeds), stages, first.name if first else None, node)


class Skip(Exception):
    """A stage that does not apply to this model or artifact: said, not run."""


def _per_sample(run, feeds) -> list[np.ndarray]:
    """One output array per output, samples first, laid out as the runners lay theirs out."""
    return measure.as_arrays([[np.asarray(o) for o in run(sample)] for sample in feeds])


def _eager(model, feeds):
    return _per_sample(lambda sample: model.run(list(sample)), feeds)


def _torch_only(model, stage: str) -> None:
    if model.framework != "torch":
        raise Skip(f"a {model.framework} source has no {stage} stage here")


def _exported(model, feeds):
    _torch_only(model, "torch.export")
    from edgeship.convert.torch_common import program_of, quiet, to_tensors
    from edgeship.sources import flatten_outputs

    program, _ = program_of(model)
    module = program.module()
    import torch

    def run(sample):
        with torch.no_grad(), quiet():
            return [t.detach().numpy() for t in flatten_outputs(module(*to_tensors(sample)))]

    return _per_sample(run, feeds)


def _quantized(model, target: str, recipe: str, calib, feeds, kept_float=()):
    if recipe != "int8":
        raise Skip(f"a {recipe} artifact has no simulated int8 stage")
    _torch_only(model, "simulated PT2E")
    if calib is None:
        raise Skip("no calibration data known (pass --calib, or diff an artifact in its bundle)")
    from edgeship.convert.torch_common import program_of, quiet, to_tensors
    from edgeship.convert.torch_pte import pt2e_quantize
    from edgeship.sources import flatten_outputs

    program, examples = program_of(model)
    with quiet():
        if target == "tflite":  # litert-torch's quantizer, as the torch -> .tflite route uses
            from edgeship.convert.torch_tflite import pt2e_quantizer

            graph = pt2e_quantize(program, examples, calib, quantizer=pt2e_quantizer(kept_float))
        else:  # .pte: XNNPACK's; .onnx: the same symmetric per-channel graph (quantize/rankers.py)
            graph = pt2e_quantize(program, examples, calib, False, kept_float)
    import torch

    def run(sample):
        with torch.no_grad(), quiet():
            return [t.detach().numpy() for t in flatten_outputs(graph(*to_tensors(sample)))]

    return _per_sample(run, feeds)


def _on_device(device, artifact, arrays):
    if device is None:
        raise Skip("no --device given")
    run = device.run_artifact(Path(artifact), [np.ascontiguousarray(a) for a in arrays], None, warmup=0, runs=0,
                              timeout=measure.DECIDE_TIMEOUT_S)
    if not run.ok or run.outputs is None:
        raise measure.CandidateFailed(f"{Path(artifact).name} on {device.uri}: {run.error or 'no outputs'}")
    return list(run.outputs)


def _node(first: Stage, stages: list[Stage], model, target: str, calib, feeds) -> str:
    """Where FIRST leaves the tolerance, in words, when it can be named."""
    if first.name == "exported":
        return "torch.export changes the model's arithmetic (a data-dependent branch, an export-only path)"
    if first.name == "quantized":
        try:
            from edgeship.quantize.rankers import ranker_for

            rows = ranker_for(model, target, calib, feeds).rank()
        except Exception as e:  # noqa: BLE001 - naming the layer is a bonus; the stage is found either way
            return f"(the layer could not be named: {type(e).__name__})"
        if rows:
            w = rows[0]
            return f"layer {w.name} ({w.kind}) loses {w.added_db:.1f} dB of SNR in the simulated int8 graph"
        return ""
    prev = first.vs_previous
    if first.name == "artifact" and prev.get("stage") == "quantized":
        return (f"the conversion: the artifact agrees with the simulated int8 graph at cosine {prev['cosine']:.4f}, "
                "so the converter or its kernels change the arithmetic")
    if first.name == "device" and prev.get("stage") == "artifact":
        return (f"the device's runtime: the same artifact agrees with this host's run at cosine "
                f"{prev['cosine']:.4f}")
    return ""
