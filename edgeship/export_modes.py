"""How export turns one (route, recipe) into an artifact: one strategy per mode, chosen once per export.

plain               convert the recipe as asked
calibration search  --calibration: the route's activation-range methods measured, the best kept
accuracy-aware      --max-drop on int8: the layers that hurt most kept float until the budget is met
recipe search       --quant auto: int8, int8 with float layers, int16x8, fp16 measured, the fastest
                    within budget kept (one artifact per format, under the recipe it kept)

Each returns a `Converted`: the converter's result, the recipe and file it wrote, and the record
fields its mode adds to the artifact's manifest entry. The rewrites (CLE, bias correction, weight
rounding) live inside the convert function every mode receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeship.quantize import recipe_search
from edgeship.quantize.accuracy_aware import search as accuracy_aware_search


@dataclass
class Converted:
    result: object  # the route's ConvertResult
    recipe: object  # the Recipe the artifact holds (the recipe search's choice under --quant auto)
    path: Path
    fields: dict = field(default_factory=dict)  # manifest fields this mode adds: recipe_search, calibration, ...


class Plain:
    name = "plain"

    def __init__(self, calib):
        self.calib = calib

    def convert(self, route, convert, model, recipe, path_for, options) -> Converted:
        path = path_for(recipe.name)
        result = convert(model, recipe, self.calib if recipe.needs_calibration else None, path, options)
        return Converted(result, recipe, path)


class CalibrationSearch(Plain):
    name = "calibration search"

    def __init__(self, calib, plan, requested: str):
        super().__init__(calib)
        self.plan, self.requested = plan, requested

    def convert(self, route, convert, model, recipe, path_for, options) -> Converted:
        if not recipe.needs_calibration:
            return super().convert(route, convert, model, recipe, path_for, options)
        path = path_for(recipe.name)
        result, choice = self.plan.convert(convert, route, model, recipe, path, options)
        return Converted(result, recipe, path, {"calibration": choice.record(self.requested)})


class AccuracyAware:
    name = "accuracy-aware"

    def __init__(self, otherwise, calib, golden, metric: str, budget: float, log):
        self.otherwise = otherwise  # the strategy for the recipes other than int8
        self.calib, self.golden, self.metric, self.budget, self.log = calib, golden, metric, budget, log

    def convert(self, route, convert, model, recipe, path_for, options) -> Converted:
        if recipe.name != "int8":
            return self.otherwise.convert(route, convert, model, recipe, path_for, options)
        path = path_for(recipe.name)
        result, record, _ = accuracy_aware_search(route, convert, model, recipe, self.calib, self.golden, path,
                                                  options, self.metric, self.budget, log=self.log)
        return Converted(result, recipe, path, {"accuracy_aware": record})


class RecipeSearch:
    name = "recipe search"

    def __init__(self, search: recipe_search.Search):
        self.search = search

    def convert(self, route, convert, model, recipe, path_for, options) -> Converted:
        found = self.search.run(route, convert, model, path_for)
        fields = {"recipe_search": found.record}
        if found.accuracy_aware:
            fields["accuracy_aware"] = found.accuracy_aware
        return Converted(found.result, found.recipe, found.path, fields)


def choose(req, calib, golden, options, log, calibration_plan=None, search_device=None):
    """The one strategy of this export, from its request (its flags already checked)."""
    if recipe_search.requested(req.recipes):
        return RecipeSearch(recipe_search.Search(calib, golden, req.metric, req.max_drop, req.calibration, options,
                                                 log, device=search_device))
    base = CalibrationSearch(calib, calibration_plan, req.calibration) if calibration_plan else Plain(calib)
    if req.max_drop is not None:
        return AccuracyAware(base, calib, golden, req.metric, req.max_drop, log)
    return base
