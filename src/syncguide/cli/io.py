"""Output files: atomic, never overwriting unless asked, with parameters in a PNG text chunk."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

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
    """Write ``image`` to ``path`` atomically (temporary file, then rename) with ``parameters`` as JSON text.

    Without ``overwrite`` an existing file is never replaced, even one that appeared while we worked.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, json.dumps(parameters, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except FileExistsError:
        raise UsageError(f"--out: {path} exists; pass --overwrite to replace it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (hard link: atomic and never clobbers)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The generation parameters stored in a PNG written by :func:`save_png`."""
    with Image.open(path) as image:
        return json.loads(image.text[PARAMETERS_KEY])
