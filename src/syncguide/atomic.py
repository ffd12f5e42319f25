"""Atomic file writes: a file that exists is complete, and an existing file is replaced only when asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, overwrite: bool = False) -> bool:
    """Write ``data`` to ``path`` through a temporary file in the same directory (created if missing).

    With ``overwrite`` the file is renamed into place (replacing any); without it a hard link makes it appear only
    if ``path`` does not exist, even one that appeared while we worked. Returns whether ``path`` was written
    (False: it existed and ``overwrite`` was not given). No temporary file is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if overwrite:
            os.replace(tmp, path)
            return True
        return _link_new(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_new(tmp: str, path: Path) -> bool:
    """Give ``tmp``'s content the name ``path`` only if ``path`` does not exist (hard link: atomic, never clobbers)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            return False
        os.replace(tmp, path)
    return True
