"""The device to run on, from a name: ``auto`` or any device torch knows."""

from __future__ import annotations

import torch

from syncguide.errors import SettingError


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be a device torch knows (else SettingError
    naming ``setting``)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SettingError(setting, f"must be cpu, cuda, cuda:N, mps or auto; got {name!r}") from None
