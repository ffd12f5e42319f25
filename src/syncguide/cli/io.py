"""Output files of the commands: checked before any work, written atomically, never overwritten unless asked.

The PNG format (parameters in a text chunk) is :mod:`syncguide.pngmeta`; ``read_parameters`` and
``PARAMETERS_KEY`` are re-exported here for scripts that read what a command wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from syncguide.errors import UsageError
from syncguide.pngmeta import PARAMETERS_KEY, read_parameters, write_png

__all__ = ["PARAMETERS_KEY", "check_output", "read_parameters", "save_png"]


def check_output(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Raise UsageError if ``path`` cannot be written: its directory is missing, or it exists and not ``overwrite``."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{option}: must end in .png; got {path}")
    if not path.parent.is_dir():
        raise UsageError(f"{option}: directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise UsageError(f"{option}: {path} exists; pass --overwrite to replace it")


def save_png(image: Image.Image, path: Path, parameters: dict[str, Any], overwrite: bool) -> None:
    """Write ``image`` to ``path`` atomically with ``parameters`` (:func:`syncguide.pngmeta.write_png`).

    Without ``overwrite`` an existing file is never replaced, even one that appeared while we worked: UsageError.
    """
    if not write_png(image, path, parameters, overwrite):
        raise UsageError(f"--out: {path} exists; pass --overwrite to replace it")
