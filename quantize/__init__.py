"""Post-training quantization recipes and calibration (imported as `edgeship.quantize`)."""

from edgeship.quantize.recipes import RECIPES, Recipe, get_recipe, parse_recipes

__all__ = ["RECIPES", "Recipe", "get_recipe", "parse_recipes"]
