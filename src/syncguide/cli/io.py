"""Output files: atomic, never overwriting unless asked, with parameters in a PNG text chunk."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from syncguide.atomic import write_atomic
from syncguide.errors import UsageError

PARAMETERS_KEY = "parameters"  # the text chunk other diffusion tools use for generation settings


def check_output(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Raise UsageError if ``path`` cannot be written: its directory is missing, or it exists and not ``overwrite``."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{option}: must end in .png; got {path}")
    if not path.parent.is_dir():
        raise UsageError(f"{option}: directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise UsageError(f"{option}: {path} exists; pass --overwrite to replace it")


def save_png(image: Image.Image, path: Path, parameters: dict[str, Any], overwrite: bool) -> None:
    """Write ``image`` to ``path`` atomically (:func:`syncguide.atomic.write_atomic`) with ``parameters`` as JSON.

    Without ``overwrite`` an existing file is never replaced, even one that appeared while we worked.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, json.dumps(parameters, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    if not write_atomic(path, buffer.getvalue(), overwrite):
        raise UsageError(f"--out: {path} exists; pass --overwrite to replace it")


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The generation parameters stored in a PNG written by :func:`save_png`."""
    with Image.open(path) as image:
        return json.loads(image.text[PARAMETERS_KEY])
