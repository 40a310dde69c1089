"""Scripts and helpers under bench/ that tests use, loaded by path (bench/ is not a package).

bench/mutations.py (artifact-byte mutations: test_fuzz, test_isolation, test_native_runner,
test_recipe_search_ties) and bench/cuda_setup.py (what the CUDA reference path lacks:
test_reference_device) live there, not in edgeship: only tests and benchmarks use them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    """bench/<name>.py as a module, loaded once (kept in sys.modules as bench_<name>)."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
