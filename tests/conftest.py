"""Shared fixtures: small CNNs trained on scikit-learn's digits (real data), loaded as sources."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Trained:
    model: object  # edgeship.model.Model
    train: object  # edgeship.data.Dataset (digits:train)
    test: object  # edgeship.data.Dataset (digits:test)
    float_accuracy: float  # held-out top-1 of the float model, percent
    source: str  # what to pass to `edgeship export`


def _trained(source: str) -> Trained:
    from edgeship.data import load_data
    from edgeship.sources import load_model

    model = load_model(source)
    train = load_data("digits:train", model.io)
    test = load_data("digits:test", model.io)
    logits = model.run(test.batch(0, len(test)))[0]
    acc = float((logits.argmax(1) == test.labels).mean() * 100)
    return Trained(model, train, test, acc, source)


@pytest.fixture(scope="session")
def torch_digits() -> Trained:
    """An nn.Module from a file.py:factory source (kind 'torch-module')."""
    return _trained(f"{REPO / 'examples' / 'torch_digits.py'}:build")


@pytest.fixture(scope="session")
def torch_digits_pt2(tmp_path_factory) -> Trained:
    """The same CNN saved by torch.export.save and loaded back (kind 'torch-exported')."""
    from edgeship.demo_models import save_torch_pt2, train_torch_cnn

    path = tmp_path_factory.mktemp("pt2") / "digits_cnn.pt2"
    save_torch_pt2(train_torch_cnn()[0], path)
    return _trained(str(path))


@pytest.fixture(scope="session")
def keras_digits(tmp_path_factory) -> Trained:
    """A Keras CNN saved as .keras and loaded back (kind 'keras')."""
    from edgeship.demo_models import train_keras_cnn

    path = tmp_path_factory.mktemp("keras") / "digits_cnn.keras"
    train_keras_cnn()[0].save(path)
    return _trained(str(path))


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(-1).reshape(-1) == labels).mean() * 100)
