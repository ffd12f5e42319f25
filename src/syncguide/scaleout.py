"""Split a manifest of work items across processes and machines (``accelerate launch``), resumably.

A manifest is a JSON-lines file of :class:`Item` s, each naming the one file it produces. Process ``r`` of ``n``
takes items ``r, r + n, r + 2n, ...`` of the manifest (a static split: no two processes ever share an item) and
skips every item whose file exists, so a killed run, rerun with any number of processes, loses and repeats
nothing. Each file is written atomically (temporary file, then a hard link that never replaces an existing
file), so a file that exists is complete. Without ``accelerate launch`` there is one process and the same code
runs everything.

Example::

    accelerate launch --num_processes 2 -m syncguide.cli.main batch manifest.jsonl --out panoramas/
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from syncguide.atomic import write_atomic
from syncguide.errors import SettingError, UsageError

KEYS = ("output", "command", "args", "meta")
"""The keys of a manifest line (``output`` and ``command`` required)."""
NAME_MAX = 255
"""Longest file or directory name in an output path, in bytes (ext4, XFS, APFS, NTFS)."""


class ManifestError(SettingError, UsageError):
    """A manifest that breaks a rule: ``line`` (1-based; None for the whole file) and ``detail`` say where and
    what. As a SettingError its setting is ``manifest`` (the command line's MANIFEST) and its rule names the
    line. Its text (and how ``syncguide batch`` reports it) is ``MANIFEST:LINE: detail``; it is a UsageError too,
    as read_manifest's errors always were."""

    def __init__(self, detail: str, line: int | None = None) -> None:
        super().__init__("manifest", detail if line is None else f"line {line}: {detail}")
        self.detail = detail
        self.line = line

    def __str__(self) -> str:
        """``MANIFEST:LINE: detail`` (``MANIFEST: detail`` for the whole file)."""
        return f"MANIFEST:{self.line}: {self.detail}" if self.line else f"MANIFEST: {self.detail}"


@dataclass(frozen=True)
class Item:
    """One unit of work: ``command`` run with ``args`` (CLI arguments) writes ``output`` (a relative path).

    ``line`` is the item's line in the manifest it was read from (0: not read from a file); it is not part of the
    item (not compared, not written).
    """

    output: str
    command: str
    args: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)

    def to_json(self) -> str:
        data = {"output": self.output, "command": self.command, "args": list(self.args), "meta": self.meta}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, line: str, number: int | None = None) -> Item:
        """The item of one manifest line (line ``number``); ManifestError naming the line for anything else."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(f"not JSON: {error.msg} (column {error.colno})", number) from None
        return cls.from_dict(data, number)

    @classmethod
    def from_dict(cls, data: Any, number: int | None = None) -> Item:
        """The item of a decoded manifest line; ManifestError unless it is an object with a string ``output``
        and ``command``, ``args`` a list of strings and ``meta`` an object (both optional), and no other key."""
        if not isinstance(data, dict):
            raise ManifestError(f"must be a JSON object {{output, command, args}}; got {_json_kind(data)}", number)
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ManifestError(f"unknown key {unknown[0]!r} (an item has {', '.join(KEYS)})", number)
        for key in ("output", "command"):
            if key not in data:
                raise ManifestError(f"{key} is missing", number)
            if not isinstance(data[key], str):
                raise ManifestError(f"{key} must be a string; got {_json_text(data[key])}", number)
        args = data.get("args", [])
        if not isinstance(args, list):
            raise ManifestError(f"args must be a list of strings; got {_json_text(args)}", number)
        for index, value in enumerate(args):
            if not isinstance(value, str):
                raise ManifestError(f"args[{index}] must be a string; got {_json_text(value)}", number)
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ManifestError(f"meta must be a JSON object; got {_json_text(meta)}", number)
        return cls(data["output"], data["command"], tuple(args), meta, number or 0)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _json_text(value: Any, limit: int = 60) -> str:
    """``value`` as JSON (null, not None), cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_manifest(items: Sequence[Item], path: Path) -> None:
    """Write ``items`` as JSON lines, atomically; an existing manifest must hold exactly the same items.

    Raises UsageError (naming ``path``) if the outputs are not unique or a different manifest is already there.
    """
    outputs = [item.output for item in items]
    if len(set(outputs)) != len(outputs):
        raise UsageError(f"manifest: outputs must be unique; {len(outputs) - len(set(outputs))} repeated")
    text = "".join(item.to_json() + "\n" for item in items)
    if path.exists():
        if path.read_text() != text:
            raise UsageError(f"--out: {path} holds a different manifest; use a new --out directory")
        return
    write_atomic(path, text.encode())


def read_manifest(path: Path) -> list[Item]:
    """The items of a manifest file (JSON lines; blank lines skipped), each knowing its line.

    ManifestError for a file that cannot be read (missing, a directory, no permission), has no items, or has a
    line that is not UTF-8 or not an item (:meth:`Item.from_dict`), naming the line.
    """
    data = _read(path).removeprefix(codecs.BOM_UTF8)  # a byte-order mark (some editors write one) is not JSON
    items = []
    for number, raw in enumerate(data.split(b"\n"), start=1):  # JSON strings may hold U+2028: split on \n only
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ManifestError(f"not valid UTF-8 (byte {error.start + 1} of the line)", number) from None
        if line.strip():
            items.append(Item.from_json(line, number))
    if not items:
        raise ManifestError(f"{path} has no items")
    return items


def _read(path: Path) -> bytes:
    """The bytes of the manifest file ``path``; ManifestError (whole file) if it is not a readable file."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ManifestError(f"{path} is a directory, not a manifest file")
        if not stat.S_ISREG(mode):
            raise ManifestError(f"{path} is not a regular file")
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestError(f"{path} does not exist") from None
    except OSError as error:  # permission denied, a name too long, an I/O error, ...
        raise ManifestError(f"cannot read {path}: {error.strerror or error}") from None


def check_manifest(items: Iterable[Item], commands: Collection[str], root: Path | None = None) -> None:
    """ManifestError naming the item's line for an item whose command is not in ``commands``, whose output is
    not a relative ``.png`` path inside the output directory (``..``, absolute, a name too long), or repeats (or
    is a directory of) another item's output. With ``root`` (the output directory), also for an output that
    exists there as a directory or under a file, and SettingError (``out``) if ``root`` is not a directory. The
    items' arguments are the caller's to check."""
    seen: dict[tuple[str, ...], Item] = {}
    items = list(items)
    for item in items:
        if item.command not in commands:
            rule = f"command must be one of {', '.join(commands)}; got {item.command!r}"
            raise ManifestError(rule, item.line or None)
        parts = check_output_path(item)
        if parts in seen:
            raise ManifestError(f"output {item.output!r} repeats {_where(seen[parts])}", item.line or None)
        seen[parts] = item
    directories = {item_parts[:end]: item for item_parts, item in seen.items() for end in range(1, len(item_parts))}
    for parts, item in seen.items():
        if parts in directories:
            other = directories[parts]
            rule = f"output {item.output!r} is a directory of {_where(other)} ({other.output!r})"
            raise ManifestError(rule, item.line or None)
    if root is not None:
        check_root(root, items)


def check_output_path(item: Item) -> tuple[str, ...]:
    """The parts of ``item``'s output path; ManifestError unless it is a relative ``.png`` path inside the output
    directory, with names the file system takes."""
    output = Path(item.output)
    rule = f"output must be a relative .png path inside the output directory; got {item.output!r}"
    if "\0" in item.output or output.is_absolute() or ".." in output.parts or output.suffix.lower() != ".png":
        raise ManifestError(rule, item.line or None)
    for name in output.parts:
        if len(os.fsencode(name)) > NAME_MAX:
            rule = f"output has a name longer than file systems allow ({NAME_MAX} bytes): {item.output!r}"
            raise ManifestError(rule, item.line or None)
    return output.parts


def check_root(root: Path, items: Iterable[Item]) -> None:
    """SettingError (``out``) unless ``root`` is a directory or can be made one; ManifestError for an item whose
    output is a directory there or lies under a file."""
    existing = existing_ancestor(root, "out")
    if existing is not None and not existing.is_dir():
        raise SettingError("out", f"{existing} is not a directory")
    if existing != root:
        return
    for item in items:
        path = root / item.output
        if path.is_dir():
            raise ManifestError(f"output {item.output!r} is a directory in {root}", item.line or None)
        for parent in path.relative_to(root).parents:
            if (root / parent).exists() and not (root / parent).is_dir():
                rule = f"output {item.output!r} lies under {root / parent}, which is not a directory"
                raise ManifestError(rule, item.line or None)


def existing_ancestor(path: Path, setting: str) -> Path | None:
    """``path`` or its nearest ancestor that exists (None: none does); SettingError naming ``setting`` if the file
    system refuses to look (a name too long, no permission)."""
    for candidate in (path, *path.parents):
        try:
            candidate.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            raise SettingError(setting, f"cannot use {path}: {error.strerror or error}") from None
        return candidate
    return None


def _where(item: Item) -> str:
    return f"line {item.line}" if item.line else f"item {item.output!r}"


def shard(items: Sequence[Item], index: int, count: int) -> list[Item]:
    """Items ``index, index + count, ...``: process ``index`` of ``count``'s share (disjoint, covering)."""
    if not 0 <= index < count:
        raise ValueError(f"index must be in 0..count-1 ({count - 1}); got {index}")
    return list(items[index::count])


def pending(items: Iterable[Item], root: Path) -> list[Item]:
    """The items whose output file under ``root`` does not exist yet."""
    return [item for item in items if not (root / item.output).exists()]


def process_state() -> Any:
    """accelerate's ``PartialState``: process index and count (one process when not launched by accelerate).

    Without CUDA the processes join a CPU (gloo) group: launch them with ``accelerate launch --multi_gpu
    --num_processes N`` (torchrun-style; accelerate's ``--cpu`` launcher needs MPI for more than one process).
    """
    import torch
    from accelerate import PartialState  # deferred: importing accelerate is slow

    return PartialState(cpu=not torch.cuda.is_available())


def run_items(
    items: Sequence[Item], root: Path, work: Callable[[Item, Path], bool], state: Any = None, desc: str = "items"
) -> list[str]:
    """Run ``work(item, root / item.output)`` for this process's pending share of ``items``; wait for all.

    ``work`` must write its file atomically without replacing an existing one (:func:`syncguide.atomic.write_atomic`,
    :func:`syncguide.pngmeta.write_png`) and return whether it wrote it. Returns the outputs this process wrote.
    """
    state = state or process_state()
    mine = pending(shard(items, state.process_index, state.num_processes), root)
    done = []
    position = state.process_index if state.num_processes > 1 else None
    bar = tqdm(mine, desc=f"{desc} [{state.process_index}]", position=position, leave=False, disable=None)
    for item in bar:  # disable=None: a progress bar on a terminal only, not in a log or a pipe
        if work(item, root / item.output):
            done.append(item.output)
    state.wait_for_everyone()
    return done
