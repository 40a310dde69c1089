"""The one loader of a user's `file.py:fn`: models (sources.py), data sources (data.py), metrics
and decoders (task_metrics.py) all import the user's file through `load_callable`.

Errors are one line each (InputError): the file missing, its import failing (with the exception),
or no callable of that name (the closest name, else the ones the file has).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from edgeship.errors import InputError


def load_callable(path: Path | str, name: str, what: str) -> Callable:
    """`name` from the Python file `path`, imported as module `edgeship_<what>_<stem>`; `what`
    ("model", "data", "metric", "decode") names the file in the errors."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} module not found: '{path}'")
    spec = importlib.util.spec_from_file_location(f"edgeship_{what}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputError(f"'{path}' is not a Python file", hint=f"pass your {what} as path/to/file.py:name")
    module = importlib.util.module_from_spec(spec)
    # registered before it runs, as `import` does: a @dataclass, pickle and typing look their module up there
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(spec.name, None)
        raise InputError(f"importing '{path}' failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        have = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        close = difflib.get_close_matches(name, have, n=1, cutoff=0.5)
        more = f". Did you mean '{close[0]}'?" if close else (f"; it has {', '.join(have[:8])}" if have else "")
        raise InputError(f"'{path}' has no function '{name}'{more}")
    return fn
