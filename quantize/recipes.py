"""The recipes: one table, the single source of truth for names, descriptions and tolerances.

Routes say which of these they take (convert/__init__.py's ROUTES, `Route.recipes`); the CLI's
help, the project file's validation and every "unsupported recipe" error read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeship.errors import UnsupportedError, suggest


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    needs_calibration: bool
    # Default validation floors against the float reference (golden outputs).
    min_cosine: float
    max_top1_drop: float  # accuracy points vs the float reference, where labels exist


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("fp32", "float32, no quantization", False, 0.9999, 0.0),
        Recipe("fp16", "float16 weights (and compute where the runtime does fp16)", False, 0.999, 0.5),
        Recipe("dynamic-int8", "int8 weights, activations quantized at run time", False, 0.99, 1.0),
        Recipe("int8", "full-integer int8, per-channel weights, calibrated activations", True, 0.98, 1.0),
        Recipe("int16x8", "int16 activations (calibrated), int8 per-channel weights", True, 0.99, 0.5),
        # measured on a digits MLP (tests/test_int4_weight.py): cosine >= 0.9996, top-1 within 0.5 points on
        # every format; the floor is int8's, as coarser weights on a larger model lose about as much
        Recipe("int4-weight", "4-bit weights in groups of 32 on Linear/matmul layers (convs stay float), int8 "
               "activations quantized at run time", False, 0.98, 2.0),
    )
}

# (recipe, target format) -> why that format cannot run it
REFUSED: dict[tuple[str, str], str] = {
    ("int16x8", "pte"): "XNNPACK has no int16 activations",
    ("int4-weight", "keras-pte"): "torchao's 8da4w quantizes nn.Linear modules, and a Keras model under the torch "
                                  "backend has none (its Dense layers are plain matmuls); use --to tflite or onnx "
                                  "for a Keras model, or a PyTorch source for .pte",
}


def refusal(recipe: str, target: str, source: str = "") -> str:
    """The reason `target` (from `source`) cannot run `recipe`, or ''."""
    return REFUSED.get((recipe, f"{source}-{target}"), "") or REFUSED.get((recipe, target), "")


RECIPE_NAMES: tuple[str, ...] = tuple(RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnsupportedError(suggest(name, RECIPES, "recipe"), hint="pass --quant with one of those") from None


def parse_recipes(text: str) -> list[Recipe]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UnsupportedError("--quant is empty", hint=f"use one or more of {', '.join(RECIPES)}")
    return [get_recipe(n) for n in dict.fromkeys(names)]
