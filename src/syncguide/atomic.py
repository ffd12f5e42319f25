"""Atomic file writes: a file that exists is complete, and an existing file is replaced only when asked."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def write_atomic(path: Path, data: bytes, overwrite: bool = False) -> bool:
    """Write ``data`` to ``path`` through a temporary file in the same directory (created if missing).

    With ``overwrite`` the file is renamed into place (replacing any); without it a hard link makes it appear only
    if ``path`` does not exist, even one that appeared while we worked. Returns whether ``path`` was written
    (False: it existed and ``overwrite`` was not given). No temporary file is left behind, even on an interrupt.
    The file gets the mode a plain ``open()`` would give it (0666 less the umask) and is synced to disk before it
    gets its name. Ctrl-C and SIGTERM are held while it writes (:func:`signals_deferred`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the mode a plain open() would
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it gets the final name: a crash leaves no empty file
            if overwrite:
                os.replace(tmp, path)
                return True
            return _link_new(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then deliver them (their handlers run after it).

    :func:`write_atomic` removes its temporary file in a ``finally``; an interrupt raised inside
    that ``finally`` (after the hard link gave the file its name) would skip the removal. Deferring only the
    write keeps the file and the directory clean. Outside the main thread (no handlers to swap) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum)) for number in INTERRUPTS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
        if received:
            signal.raise_signal(received[0])  # now: the restored handler raises KeyboardInterrupt (or exits)


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
