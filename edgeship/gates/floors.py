"""The accuracy floors an artifact is held to against its float model: one rule for export's verdict
(edgeship/smoke.py, on the golden vectors) and for `validate` (edgeship/validation.py).

Each recipe has its default floors (quantize/recipes.py: int8 cosine >= 0.98 and top-1 drop <= 1
point, fp32 cosine >= 0.9999, ...). A known loss is accepted by stating a looser floor, never by
hiding the figure: `export --floor int8:cosine=0.95 --floor int8:top1_drop=3` (or `cosine=0.95` for
every recipe), `validate --min-cosine/--max-drop`, and in edgeship.toml a target's `max_drop`. The
floor used is recorded beside the figure, so a reader sees both.
"""

from __future__ import annotations

from edgeship.errors import InputError, suggest
from edgeship.quantize.recipes import RECIPE_NAMES, get_recipe

# user-facing floor names -> (check name validate reports, comparison)
FLOOR_NAMES = {"cosine": ("cosine", ">="), "top1_drop": ("accuracy_drop", "<=")}
ANY = "*"


def parse_floors(texts) -> dict[str, dict[str, float]]:
    """--floor [RECIPE:]NAME=VALUE (repeatable) -> {recipe or '*': {'cosine': v, 'top1_drop': v}}."""
    floors: dict[str, dict[str, float]] = {}
    for text in texts or ():
        head, sep, value = str(text).partition("=")
        recipe, _, name = head.strip().rpartition(":")
        recipe, name = recipe.strip() or ANY, name.strip().replace("-", "_")
        if not sep or name not in FLOOR_NAMES:
            raise InputError(f"--floor '{text}' is not [RECIPE:]NAME=VALUE with NAME "
                             f"{' or '.join(FLOOR_NAMES)}" + (f" ({suggest(name, FLOOR_NAMES, 'floor')})"
                                                             if sep and name else ""),
                             hint="e.g. --floor int8:cosine=0.95 --floor int8:top1_drop=3")
        if recipe != ANY and recipe not in RECIPE_NAMES:
            raise InputError(suggest(recipe, RECIPE_NAMES, "recipe") + f" (in --floor '{text}')",
                             hint="name a recipe of --quant, or leave it out to set the floor of every recipe")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"--floor '{text}': '{value}' is not a number") from None
        if name == "cosine" and not -1.0 <= number <= 1.0 or name == "top1_drop" and number < 0:
            raise InputError(f"--floor '{text}': a cosine floor lies in [-1, 1], a top-1 drop is 0 or more points")
        floors.setdefault(recipe, {})[name] = number
    return floors


def floors_for(recipe: str | None, floors: dict | None = None) -> dict[str, float]:
    """{'cosine': min, 'top1_drop': max} for an artifact of RECIPE: the recipe's defaults, then the
    floors given for every recipe, then those given for this recipe. {} for an unknown recipe."""
    try:
        r = get_recipe(recipe) if recipe else None
    except Exception:  # an older bundle's recipe name edgeship no longer has
        r = None
    if r is None:
        return {}
    out = {"cosine": r.min_cosine, "top1_drop": r.max_top1_drop}
    floors = floors or {}
    out.update(floors.get(ANY, {}))
    out.update(floors.get(recipe, {}))
    return out


def checks(accuracy: dict, limits: dict[str, float]) -> list[dict]:
    """validate-style checks ({name, value, limit, op, passed}) of an accuracy record against LIMITS;
    a metric the record lacks (no labels: no top-1 drop) is not checked."""
    out = []
    if "cosine" in limits and accuracy.get("cosine") is not None:
        out.append({"name": "cosine", "value": accuracy["cosine"], "limit": limits["cosine"], "op": ">=",
                    "passed": bool(accuracy["cosine"] >= limits["cosine"])})
    if "top1_drop" in limits and accuracy.get("accuracy_drop") is not None:
        out.append({"name": "accuracy_drop", "value": accuracy["accuracy_drop"], "limit": limits["top1_drop"],
                    "op": "<=", "passed": bool(accuracy["accuracy_drop"] <= limits["top1_drop"] + 1e-9)})
    return out


def describe(check: dict) -> str:
    """'cosine 0.7812 < floor 0.98' / 'top-1 drop 41.2 pts > floor 1'."""
    if check["name"] == "cosine":
        return f"cosine {check['value']:.4f} < floor {check['limit']:g}"
    return f"top-1 drop {check['value']:.1f} pts > floor {check['limit']:g}"
