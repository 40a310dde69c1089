"""The float-model rewrites of a calibrated recipe, decided as one sequence: CLE, then GPTQ weight
rounding, then bias correction (each works on what the one before kept; bias correction last, as it
corrects the shift of the weights finally quantized). The math stays in each rewrite's module
(equalize.py, weight_rounding.py, bias_correction.py); this driver decides.

Per rewrite, in turn:
  off or not applicable     skipped, recorded with why
  on (gptq)                 applied, no measurement
  auto                      a cheap simulated first stage where one predicts: int8 simulated in torch
                            (quantize/simulate.py) without and with the rewrite; under GATE_DB (equalize.py, 1 dB) of
                            simulated gain the rewrite is not applied and nothing converts. For bias correction
                            the gate is the simulated gain over BIAS_SIM_OVERSTATES (2): measured, the simulation
                            said twice the real gain or more (below); past it, bias correction is applied on the
                            prediction with no trial (it moves bias values only, so the graph, its delegation and
                            its latency stay; only SNR is in question, and the smoke measures the shipped one).
                            Where no simulation runs (a Keras model), and for CLE: a real trial: the current
                            model's artifact (converted once, then reused) against the rewritten model's,
                            both run by validate's runner in a child (runtime/measure.py).

A trial keeps the rewrite only when all three hold (the rule):
  1. its weakest-output SNR is higher;
  2. no op leaves the delegate (delegated op count not lower, where the route reports one);
  3. its p50 is not slower by more than LATENCY_MARGIN (5%) and LATENCY_FLOOR_MS (0.05 ms) with a
     one-sided Mann-Whitney p below LATENCY_ALPHA (0.01) over the per-run times: a difference the
     test cannot separate, or one too small to matter on any device (a few microseconds), is none.
A rewritten model that does not convert (or whose artifact fails the route's load check), or an
artifact that crashes or hangs in the child, loses its trial; the export goes on.

So k auto rewrites cost at most k+1 conversions (one more when a later `on` rewrite follows the last
trial), against 2^k when each auto converted both ways around everything inside it; a rewrite the
simulation rules out costs none, and one it rules in without a trial (bias correction) none more.
Records come back as values: `records_for(path)` gives {manifest key: record} for the artifact
written there.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeship.convert.base import converter_message
from edgeship.hashing import sha256_file
from edgeship.quantize import equalize  # its GATE_DB: the simulated gain below which an auto rewrite is not tried
from edgeship.quantize.calibration import score
from edgeship.runtime import measure as run_path

LATENCY_MARGIN = 0.05
LATENCY_ALPHA = 0.01
LATENCY_FLOOR_MS = 0.05
LATENCY_RUNS = 20
SIM_SAMPLES = 32
# bias correction's simulated gain against its real trial's (weakest-output SNR, int8, dB), measured by
# `edgeship export SRC --to tflite|pte --quant int8` on main (manifest bias_correction: simulated.gain_db
# vs snr_db_with - snr_db_without): digits CNN 2.59 -> +1.12 (.tflite), +1.19 (.pte); the zoo's onet 1.21 ->
# +0.65, -0.27; the zoo's MobileNetV2 1.78 -> -0.90 (.tflite), -0.69 (.pte). The simulation quantizes activations per
# tensor from min/max, the converters from histograms: it overstates the gain about 2x, so the trial opens
# only where half the simulated gain reaches GATE_DB. Each trial costs one more conversion.
BIAS_SIM_OVERSTATES = 2.0


@dataclass
class Step:
    """What one rewrite proposes for the current model."""

    key: str  # the manifest field: cle | weight_rounding | bias_correction
    decide: str  # skip | apply | trial
    model: object = None  # the rewritten Model (apply, trial)
    record: dict = field(default_factory=dict)


@dataclass
class Trial:
    model: object
    path: Path
    result: object
    snr_db: float
    delegated: int | None
    times_ms: list[float]
    p50_ms: float | None


def _delegated(result) -> int | None:
    d = getattr(result, "delegation", None) or {}
    return d.get("delegated_ops") if d.get("total_ops") else None


def slower(times_new: list[float], times_old: list[float]) -> tuple[bool, float | None]:
    """(significantly slower by more than the margin, p) of the new artifact's per-run times."""
    import numpy as np

    if len(times_new) < 5 or len(times_old) < 5:
        return False, None
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(times_new, times_old, alternative="greater").pvalue)
    new, old = float(np.median(times_new)), float(np.median(times_old))
    margin = new > old * (1 + LATENCY_MARGIN) and new - old > LATENCY_FLOOR_MS
    return bool(margin and p < LATENCY_ALPHA), round(p, 6)


class Sequence:
    """The rewrites of one export, outermost first (CLE, rounding, bias correction), as one convert
    wrapper: `wrap(convert, target)`."""

    def __init__(self, rewrites: list, inputs, reference, log=print):
        self.rewrites, self.inputs, self.reference, self.log = rewrites, inputs, reference, log
        self._by_bytes: dict[str, dict] = {}
        self._last: dict = {}
        self._simulated: dict[tuple, tuple] = {}  # (id(module), bits) -> (module, SNR): each module simulated once
        self._conversion_error: Exception | None = None  # the last trial conversion's error
        self._seconds = {"rewrite decisions": 0.0, "rewrite trials": 0.0}  # the export's clock reads these

    def seconds(self) -> dict[str, float]:
        """Seconds spent so far deciding (the rewrites' math and simulations) and in real trials."""
        return dict(self._seconds)

    def records_for(self, path) -> dict:
        """{manifest key: record} of the conversion that wrote these bytes; else (a search that rebuilt
        the artifact around the rewritten model) the latest records; {} before any."""
        return self._by_bytes.get(sha256_file(path), self._last)

    def warm(self, model, pairs, calib) -> None:
        """Each rewrite's math and simulations that need no conversion, for each (recipe, target) of `pairs`
        (the calibrated recipes the rewrites apply to), done now and kept in the rewrites' caches. export
        calls it before its formats fork: each child then finds them done (it inherits the caches) instead
        of redoing them on its one thread. It stops at a rewrite whose decision needs a real trial (what
        follows depends on the trial), and at one that fails: the format's own conversion meets the failure
        again and reports it as that artifact's. Says nothing: each format says its decisions as it
        reaches them."""
        said, self.log = self.log, lambda *args, **kwargs: None
        try:
            for recipe, target in pairs:
                current = model
                for rewrite in self.rewrites:
                    try:
                        step = self._timed_propose(rewrite, current, recipe, calib, target)
                    except Exception:  # noqa: BLE001 - said by the format's conversion, which meets it again
                        break
                    if step.decide == "trial":
                        break
                    if step.decide == "apply":
                        current = step.model
        finally:
            self.log = said

    def wrap(self, convert, target: str):
        def converted(model, recipe, calib, out_path, options):
            if not recipe.needs_calibration or not self.rewrites:  # fp32/fp16 (the search's fp16): never rewritten
                return convert(model, recipe, calib, out_path, options)
            return self._run(convert, target, model, recipe, calib, Path(out_path), options)

        return converted

    # one (model, recipe, route) through the sequence
    def _run(self, convert, target, model, recipe, calib, out_path: Path, options):
        records: dict[str, dict] = {}
        current, kept = model, None  # kept: the Trial of `current`, once one was converted
        unconverted = None  # (model, error) of a current model whose trial conversion failed
        with tempfile.TemporaryDirectory(prefix="edgeship-rewrites-") as tmp:
            for i, rewrite in enumerate(self.rewrites):
                step = self._timed_propose(rewrite, current, recipe, calib, target)
                records[step.key] = step.record
                if step.decide == "apply":
                    current, kept = step.model, None
                elif step.decide == "trial":
                    if kept is None:
                        self._conversion_error = None
                        kept = self._trial(convert, current, recipe, calib, Path(tmp) / f"{i}-without{out_path.suffix}",
                                           options)
                        if self._conversion_error is not None:
                            unconverted = (current, self._conversion_error)
                    if kept is None:  # the current model's own artifact cannot run: nothing to compare with
                        step.record.update(applied=False, trial=True, skipped="the artifact without it could not run")
                        continue
                    new = self._trial(convert, step.model, recipe, calib, Path(tmp) / f"{i}-with{out_path.suffix}",
                                      options)
                    keep, why = self._judge(kept, new, timed=step.key != "bias_correction")
                    step.record.update(applied=keep, trial=True, snr_db_without=kept.snr_db,
                                       snr_db_with=None if new is None else new.snr_db, decided=why)
                    self.log(f"  {step.key.replace('_', ' ')} auto: weakest-output SNR {kept.snr_db:.2f} dB without, "
                             + ("could not run with" if new is None else f"{new.snr_db:.2f} dB with")
                             + f" -> {'applied' if keep else 'not applied'} ({why})")
                    if keep:
                        current, kept = step.model, new
            if kept is not None and kept.model is current:
                shutil.copyfile(kept.path, out_path)
                result = kept.result
            elif unconverted is not None and unconverted[0] is current:  # it failed to convert once already
                raise unconverted[1]
            else:
                result = convert(current, recipe, calib, out_path, options)
        self._by_bytes[sha256_file(out_path)] = self._last = records
        return result

    def _trial(self, convert, model, recipe, calib, path: Path, options) -> Trial | None:
        t0 = time.perf_counter()
        try:
            return self._timed_trial(convert, model, recipe, calib, path, options)
        finally:
            self._seconds["rewrite trials"] += time.perf_counter() - t0

    def _timed_trial(self, convert, model, recipe, calib, path: Path, options) -> Trial | None:
        try:
            result = convert(model, recipe, calib, path, options)
        except Exception as e:  # noqa: BLE001 - a candidate the converter or its load check refuses loses its trial
            self.log(f"  {path.name} did not convert: {converter_message(e)}")
            self._conversion_error = e
            return None
        try:
            outs, p50, times = run_path.outputs_and_p50(path, list(self.inputs), warmup=3, runs=LATENCY_RUNS)
        except run_path.CandidateFailed as e:
            self.log(f"  {e.message}")
            return None
        return Trial(model, path, result, score(self.reference, outs)["snr_db"], _delegated(result), times, p50)

    @staticmethod
    def _judge(old: Trial, new: Trial | None, timed: bool = True) -> tuple[bool, str]:
        """Keep a rewrite for higher SNR, no op leaving the delegate and, where `timed`, no slower p50. Bias
        correction is not timed: it moves bias values only, so any p50 difference is the machine's noise (a
        Keras MobileNetV2's +7.4 dB int8 .tflite was kept on a loaded machine and not on a quiet one, where
        only its timing could have refused it)."""
        if new is None:
            return False, "the rewritten artifact could not run"
        if not new.snr_db > old.snr_db:
            return False, "no SNR gain"
        if old.delegated is not None and new.delegated is not None and new.delegated < old.delegated:
            return False, f"{old.delegated - new.delegated} op(s) would leave the delegate"
        if not timed:
            return True, "higher SNR, same delegation (bias values only: p50 not compared)"
        is_slower, p = slower(new.times_ms, old.times_ms)
        if is_slower:
            return False, (f"p50 {new.p50_ms:.3f} ms against {old.p50_ms:.3f} ms, over {LATENCY_MARGIN:.0%} slower "
                           f"(Mann-Whitney p={p:.2g})")
        return True, "higher SNR, same delegation, p50 within the margin" + ("" if p is None else f" (p={p:.2g})")

    def _timed_propose(self, rewrite, model, recipe, calib, target: str) -> Step:
        """_propose, its seconds on the 'rewrite decisions' clock (a failure's too)."""
        t0 = time.perf_counter()
        try:
            return self._propose(rewrite, model, recipe, calib, target)
        finally:
            self._seconds["rewrite decisions"] += time.perf_counter() - t0

    # each rewrite's proposal, from its own module's math
    def _propose(self, rewrite, model, recipe, calib, target: str) -> Step:
        from edgeship.quantize.bias_correction import Plan as BiasPlan
        from edgeship.quantize.equalize import Plan as EqualizePlan
        from edgeship.quantize.weight_rounding import Plan as RoundingPlan

        if isinstance(rewrite, EqualizePlan):
            return self._cle(rewrite, model, recipe)
        if isinstance(rewrite, RoundingPlan):
            fixed, record = rewrite.rounded(model, calib, target, recipe.name)
            record = {"mode": rewrite.mode, **record}
            if record["layers"] == 0:
                return Step("weight_rounding", "skip", None, {**record, "applied": False})
            if rewrite.mode == "gptq":
                return Step("weight_rounding", "apply", fixed, {**record, "applied": True})
            return Step("weight_rounding", "trial", fixed, record)
        if isinstance(rewrite, BiasPlan):
            fixed, record = rewrite.corrected(model, calib, target, recipe.name)
            record = {"mode": rewrite.mode, **record}
            if record.get("layers", 0) == 0:
                return Step("bias_correction", "skip", None, {**record, "applied": False})
            if rewrite.mode == "on":
                return Step("bias_correction", "apply", fixed, {**record, "applied": True})
            sim = self._simulated_gain(model, fixed, recipe.name)
            if sim is not None:
                gate = equalize.GATE_DB * BIAS_SIM_OVERSTATES
                record["simulated"] = {**sim, "threshold_db": gate}
                if sim["gain_db"] < gate:
                    self.log(f"  bias correction auto: simulated SNR {sim['snr_db_without']:.2f} dB without, "
                             f"{sim['snr_db_with']:.2f} dB with ({sim['gain_db']:+.2f} dB < {gate} dB, the "
                             f"simulation overstates it {BIAS_SIM_OVERSTATES:g}x) -> not applied, no real trial")
                    return Step("bias_correction", "skip", None, {
                        **record, "applied": False, "trial": False,
                        "skipped": f"simulated gain {sim['gain_db']:+.2f} dB is under {gate} dB ({equalize.GATE_DB} "
                                   f"dB, at the {BIAS_SIM_OVERSTATES:g}x the simulation overstates)"})
                # Bias correction moves bias values only: the graph, so delegation and latency (the rule's 2
                # and 3), is the same by construction, and SNR is all there is to decide. Past the gate the
                # simulation predicts a gain (every measured case above it gained, see BIAS_SIM_OVERSTATES):
                # applied on that prediction, one conversion; the shipped artifact's real SNR is the smoke's.
                predicted = round(sim["gain_db"] / BIAS_SIM_OVERSTATES, 3)
                self.log(f"  bias correction auto: simulated SNR {sim['snr_db_without']:.2f} dB without, "
                         f"{sim['snr_db_with']:.2f} dB with ({sim['gain_db']:+.2f} dB >= {gate} dB) -> applied, "
                         f"no real trial (predicted {predicted:+.2f} dB real)")
                return Step("bias_correction", "apply", fixed, {
                    **record, "applied": True, "trial": False, "predicted_gain_db": predicted,
                    "decided": f"simulated gain {sim['gain_db']:+.2f} dB >= {gate} dB: applied on the simulation's "
                               f"prediction, one conversion (bias values only: same graph, same delegation)"})
            return Step("bias_correction", "trial", fixed, record)
        raise TypeError(f"not a rewrite: {type(rewrite).__name__}")

    def _cle(self, plan, model, recipe) -> Step:
        if plan.skipped:
            return Step("cle", "skip", None, {"mode": plan.mode, "applied": False, "pairs": plan.pairs,
                                              "skipped": plan.skipped})
        if plan.mode == "on" or plan.pairs == 0:
            return Step("cle", "apply" if plan.pairs else "skip", plan.equalized,
                        {"mode": plan.mode, "applied": plan.pairs > 0, "pairs": plan.pairs})
        sim = plan.simulate(recipe.name)
        self._remember(plan.model.obj, sim["activation_bits"], sim["snr_db_without"])
        self._remember(plan.equalized.obj, sim["activation_bits"], sim["snr_db_with"])
        said = (f"  cle auto: simulated int{sim['activation_bits']} SNR {sim['snr_db_without']:.2f} dB without, "
                f"{sim['snr_db_with']:.2f} dB with ({sim['gain_db']:+.2f} dB")
        gate = equalize.GATE_DB
        if sim["gain_db"] < gate:
            self.log(f"{said} < {gate} dB) -> not applied, no real trial")
            return Step("cle", "skip", None, {"mode": "auto", "applied": False, "pairs": plan.pairs, "simulated": sim,
                                              "trial": False,
                                              "skipped": f"simulated gain {sim['gain_db']:+.2f} dB is under {gate} dB"})
        self.log(f"{said}) -> real trial")
        return Step("cle", "trial", plan.equalized, {"mode": "auto", "pairs": plan.pairs, "simulated": sim})

    def _simulated_gain(self, model, fixed, recipe: str) -> dict | None:
        """Simulated int8 weakest-output SNR without and with a rewrite of a torch module (None: not a
        torch module, or the simulation cannot run it, so the real trial decides)."""
        from edgeship.quantize.simulate import simulated_snr_db

        if model.kind != "torch-module" or fixed.kind != "torch-module":
            return None
        bits = 16 if recipe == "int16x8" else 8
        n = min(SIM_SAMPLES, int(self.inputs[0].shape[0]))
        inputs, reference = [a[:n] for a in self.inputs], [r[:n] for r in self.reference]
        try:
            without, with_ = (self._snr(m.obj, bits, lambda m=m: simulated_snr_db(m.obj, inputs, reference, 127,
                                                                                   bits)) for m in (model, fixed))
        except Exception:  # noqa: BLE001 - a module the simulation cannot run: the real trial decides
            return None
        return {"snr_db_without": without, "snr_db_with": with_, "gain_db": round(with_ - without, 3),
                "threshold_db": equalize.GATE_DB, "samples": n, "activation_bits": bits}

    def _remember(self, module, bits: int, snr: float) -> None:
        self._simulated[(id(module), bits)] = (module, snr)  # the module held: its id stays its own

    def _snr(self, module, bits: int, simulate) -> float:
        """A module's simulated SNR, once per export: CLE's 'without' is bias correction's, and every
        format of the export proposes the same corrected module."""
        if (id(module), bits) not in self._simulated:
            self._remember(module, bits, simulate())
        return self._simulated[(id(module), bits)][1]
