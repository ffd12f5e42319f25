"""Output files of the commands: checked before any work, written atomically, never overwritten unless asked.

The PNG format (parameters in a text chunk) is :mod:`syncguide.pngmeta`; ``read_parameters`` and
``PARAMETERS_KEY`` are re-exported here for scripts that read what a command wrote.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from syncguide.atomic import signals_deferred
from syncguide.errors import UsageError
from syncguide.pngmeta import PARAMETERS_KEY, read_parameters, write_png

__all__ = ["PARAMETERS_KEY", "check_output", "read_parameters", "save_png"]


def check_output(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Raise UsageError if ``path`` cannot be written (before any work): not a .png name, a name too long for the
    file system, a directory, a missing or unwritable directory, or an existing file without ``overwrite``."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{option}: must end in .png; got {path}")
    if not path.parent.is_dir():
        raise UsageError(f"{option}: directory {path.parent} does not exist")
    limit = os.pathconf(path.parent, "PC_NAME_MAX")
    if len(os.fsencode(path.name)) > limit:
        raise UsageError(f"{option}: the file name is longer than this file system allows ({limit} bytes)")
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a directory; give a file name ending in .png")
    if path.exists() and not overwrite:
        raise UsageError(f"{option}: {path} exists; pass --overwrite to replace it")
    check_writable(path.parent, option)


def check_output_dir(path: Path, option: str = "--out") -> None:
    """UsageError unless ``path`` can be (or is) a writable directory: no component longer than the file system
    allows, not an existing file, and its nearest existing ancestor writable (before any work)."""
    existing = path
    while True:
        try:
            present = existing.exists()
        except OSError:  # a component too long for the file system: exists() raises ENAMETOOLONG
            present = False
        if present or existing == existing.parent:
            break
        existing = existing.parent
    limit = os.pathconf(existing, "PC_NAME_MAX") if existing.is_dir() else 255
    for part in path.relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise UsageError(f"{option}: a name in {path} is longer than this file system allows ({limit} bytes)")
    if existing == path and not path.is_dir():
        raise UsageError(f"{option}: {path} exists and is not a directory")
    if not existing.is_dir():
        raise UsageError(f"{option}: {existing} is not a directory")
    check_writable(existing, option)


def check_writable(directory: Path, option: str) -> None:
    """UsageError unless a file can be created in ``directory`` (a probe file, removed at once; Ctrl-C and SIGTERM
    wait until it is gone, as for every atomic write)."""
    with signals_deferred():
        try:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".syncguide-probe-")
        except OSError as error:
            raise UsageError(f"{option}: cannot write in {directory}: {error.strerror or error}") from None
        os.close(fd)
        os.unlink(probe)


def save_png(image: Image.Image, path: Path, parameters: dict[str, Any], overwrite: bool) -> None:
    """Write ``image`` to ``path`` atomically with ``parameters`` (:func:`syncguide.pngmeta.write_png`).

    Without ``overwrite`` an existing file is never replaced, even one that appeared while we worked: UsageError.
    """
    if not write_png(image, path, parameters, overwrite):
        raise UsageError(f"--out: {path} exists; pass --overwrite to replace it")
