"""The device registry: a URI in, a Device out (the protocol is base.py's).

`local` is the host; `emu:rpi4`/`emu:rpi5` an emulated Raspberry Pi; `ssh://user@host[:port]` a
board over SSH; `adb`/`adb:SERIAL` an Android phone.
"""

from __future__ import annotations

from edgeship.errors import InputError, suggest
from edgeship.runtime.adb import AdbDevice
from edgeship.runtime.base import DEVICE_SCHEMES, Device, scheme_of
from edgeship.runtime.emulated import EmulatedDevice
from edgeship.runtime.local import LocalDevice
from edgeship.runtime.ssh import SSHDevice

# the one list of device kinds: each class carries its scheme, setup, probe and preflight (base.Device)
DEVICES: dict[str, type] = {cls.scheme: cls for cls in (LocalDevice, EmulatedDevice, SSHDevice, AdbDevice)}


def device_class(uri: str) -> type:
    """The class that serves URI's scheme; an unknown URI is an InputError with the nearest scheme."""
    scheme = scheme_of(uri)
    if scheme is None:
        raise InputError(suggest(uri, DEVICE_SCHEMES, "device"), hint="e.g. --device emu:rpi4")
    return DEVICES[scheme]


def open_device(uri: str) -> Device:
    cls = device_class(uri)
    return cls() if cls is LocalDevice else cls(uri)
