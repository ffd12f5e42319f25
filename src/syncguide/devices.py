"""The device to run on, from a name: ``auto`` or a device this machine has."""

from __future__ import annotations

import torch

from syncguide.errors import SettingError


def available_devices() -> list[str]:
    """The devices this machine can run on: ``cpu``, then ``cuda:0`` ... and ``mps`` where present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other name must be a device this machine has.

    SettingError naming ``setting`` for a name torch does not know, a device that is not present (``cuda`` on a
    machine without a GPU, ``cuda:99``), or ``meta`` (it holds no data to compute on).
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingError(setting, f"must be cpu, cuda, cuda:N, mps or auto; got {name!r}") from None
    if not _present(device):
        have = ", ".join(available_devices())
        raise SettingError(setting, f"{name} is not available on this machine (available: {have}, auto)")
    return device


def _present(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return False  # meta, and back-ends this project does not run on
