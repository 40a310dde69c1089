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


# --- parallel runs (scripts/test: pytest-xdist, -n <cores> --dist loadfile) --------------------------

# Modules that change the shared arm64 root filesystem in ~/.cache/edgeship: test_device_ssh and
# test_native_devices remove and reinstall its /root/.edgeship (the SSH device's home), and
# test_device_emu makes the hard-linked rpi5 view of the whole tree. Run in parallel, one would delete
# the runtime another is using, so they are one unit of work: one worker runs them one after another.
# test_ssh_push_only only reads the rootfs (into its own hard-linked view) but runs the same session
# digits bundle as test_device_ssh: in the same unit it is exported once.
SHARED_ROOTFS_WRITERS = ("test_device_ssh.py", "test_native_devices.py", "test_device_emu.py", "test_ssh_push_only.py")

# Modules whose tests share nothing but session fixtures: each test is its own unit of work, so both
# workers share the module. test_zoo: 18 independent real-model round trips (6 models x 3 formats,
# fp32 and int8 each), the longest module by far.
PER_TEST = ("test_zoo.py",)

# Units of work, heaviest first. xdist hands them out in this order, so the long ones start first and
# the short ones fill the gaps at the end, instead of a long module starting last while the other
# worker idles. An estimate from what each module converts and runs (real-model exports, qemu device
# runs, recipe searches); the full run's --durations (/work/notes/durations.md) should refine it.
HEAVY_FIRST: tuple[str, ...] = (
    "test_zoo.py", "shared-rootfs", "test_recipe_search.py", "test_recipe_search_device.py",
    "test_recipe_search_ties.py", "test_device_adb.py", "test_api.py", "test_task_e2e.py", "test_planted_faults.py",
    "test_reproducible.py", "test_route_torch_tflite.py", "test_route_keras_pte.py", "test_route_torch_pte.py",
    "test_cle_auto.py", "test_bias_correction.py", "test_export_validate.py", "test_torch_passes.py",
    "test_export_verdict.py", "test_cli.py", "test_interrupt.py", "test_keras_graph_passes.py",
    "test_int4_weight.py", "test_native_runner.py", "test_check.py",
)


def _unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module; one unit for all the rootfs writers; the test
    itself in a PER_TEST module."""
    path = nodeid.split("::", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if name in SHARED_ROOTFS_WRITERS:
        return "shared-rootfs"
    return nodeid if name in PER_TEST else path


def _rank_name(nodeid: str) -> str:
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return "shared-rootfs" if name in SHARED_ROOTFS_WRITERS else name


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the rootfs writers as one unit and PER_TEST modules split, in the order
    the workers collected (HEAVY_FIRST), not xdist's by-test-count. Each module stays on one worker,
    so its module-scoped fixtures (exported bundles, trained models, an sshd on the rootfs) are built
    once. (Not xdist's own
    loadgroup: with pytest 9 its xdist_group suffix no longer reaches the node id, so it groups nothing.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return ModuleUnits(config, log)


@pytest.hookimpl(tryfirst=True)  # after pytest-randomly's shuffle (a wrapper), before xdist's own hooks
def pytest_collection_modifyitems(config, items):
    """In an xdist worker, order the modules heaviest first (a stable sort: the order within a module,
    shuffled or not, is kept; every worker sorts the same collection the same way)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # a serial run: the order does not matter
        return
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(_rank_name(item.nodeid), len(rank)))
