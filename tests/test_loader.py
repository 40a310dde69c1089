"""edgeship/loader.py: a user's file.py:fn imports as Python's own `import` would, so the code people
write in model and data files (a @dataclass config, pickling) works, and a failing import is one line."""

from __future__ import annotations

import sys

import pytest

from edgeship.errors import InputError
from edgeship.loader import load_callable

MODEL_FILE = '''
from __future__ import annotations
from dataclasses import dataclass

@dataclass
class Config:
    width: int = 8

def build():
    return Config()
'''


def test_a_file_with_a_dataclass_loads(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    build = load_callable(path, "build", "model")  # before: AttributeError: 'NoneType' object has no attribute '__dict__'
    assert build().width == 8
    assert sys.modules[build.__module__].__file__ == str(path)


def test_a_failing_import_is_one_line_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_module_anywhere\n")
    with pytest.raises(InputError, match="importing .*broken.py' failed: ModuleNotFoundError"):
        load_callable(path, "build", "model")
    assert "edgeship_model_broken" not in sys.modules
