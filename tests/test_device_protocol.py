"""The device table is the only list of device kinds (issue 20, rooms): each kind's class carries its scheme,
its `devices setup` options, its setup (`prepare`), its probe and its preflight, and the commands ask the class.

The emulated, SSH and adb devices' setup and doctor run for real in test_device_emu, test_device_ssh and
test_device_adb; here: the table's shape, and the host's setup, doctor and option refusals through the CLI."""

from __future__ import annotations

import inspect
import json

import pytest
from click.testing import CliRunner

from edgeship.cli.main import cli
from edgeship.errors import InputError
from edgeship.runtime import base
from edgeship.runtime.device import DEVICES, device_class, open_device


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_scheme_has_one_class_that_carries_the_whole_protocol():
    assert set(DEVICES) == set(base.SCHEME_NAMES) - {"host"}
    for scheme, cls in DEVICES.items():
        assert cls.scheme == scheme
        assert isinstance(cls.setup_options, dict)
        assert inspect.ismethod(cls.prepare), f"{cls.__name__}.prepare is a classmethod"
        for name in ("probe", "preflight", "run_artifact"):
            assert callable(getattr(cls, name, None)), f"{cls.__name__} has no {name}"
    every = [name for cls in DEVICES.values() for name in cls.setup_options]
    assert sorted(every) == ["with_executorch", "with_python"]  # each option belongs to one kind


def test_uris_map_to_their_class_and_a_typo_is_an_input_error():
    assert device_class("local").scheme == "local" and device_class("host").scheme == "local"
    assert device_class("emu:rpi5").scheme == "emu"
    assert device_class("ssh://pi@raspberrypi.local:2222").scheme == "ssh"
    assert device_class("adb:emulator-5554").scheme == "adb"
    with pytest.raises(InputError, match="emu"):
        device_class("emux:rpi4")


def test_the_host_sets_up_and_reports_through_its_class():
    device = open_device("local")
    device.preflight()  # nothing to connect to: returns
    r = run_cli("devices", "setup", "local", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["setup"] == "nothing to do" and report["setup_seconds"] >= 0
    assert report["tflite"]["available"] and report["executorch_native"]
    r = run_cli("devices", "doctor", "local", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["machine"] == report["machine"]


@pytest.mark.parametrize(("uri", "flag", "said", "takes", "instead"), [
    ("local", "--with-python", "--with-python is for emu:* devices", "takes no options", "the host runs"),
    ("local", "--with-executorch", "--with-executorch installs onto ssh:// devices", "takes no options",
     "installed with edgeship"),
    ("emu:rpi4", "--with-executorch", "--with-executorch installs onto ssh:// devices, not emu:rpi4",
     "takes --with-python", "no CPU torch for arm64"),
])
def test_an_option_another_kind_takes_is_refused_before_any_work(uri, flag, said, takes, instead):
    """The refusal says what the kind does instead, then which options it takes."""
    r = run_cli("devices", "setup", uri, flag)
    out = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert said in out and takes in out and instead in out and "Traceback" not in out


def test_every_kind_says_what_it_does_instead_of_each_option_it_does_not_take():
    from edgeship.runtime.device import DEVICES

    options = {name for cls in DEVICES.values() for name in cls.setup_options}
    for cls in DEVICES.values():
        assert options - set(cls.setup_options) <= set(cls.setup_instead), cls
