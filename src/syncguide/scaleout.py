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

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from syncguide.atomic import write_atomic
from syncguide.errors import SettingError, UsageError


@dataclass(frozen=True)
class Item:
    """One unit of work: ``command`` run with ``args`` (CLI arguments) writes ``output`` (a relative path)."""

    output: str
    command: str
    args: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "args": list(self.args)}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Item:
        data = json.loads(line)
        return cls(data["output"], data["command"], tuple(data.get("args", ())), data.get("meta", {}))


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
    """The items of a manifest file; UsageError for a missing, empty or malformed one."""
    if not path.is_file():
        raise UsageError(f"MANIFEST: {path} is not a file")
    try:
        items = [Item.from_json(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(
            f"MANIFEST: {path} is not a syncguide manifest (JSON lines with output, command): {error}"
        ) from None
    if not items:
        raise UsageError(f"MANIFEST: {path} has no items")
    return items


def check_manifest(items: Iterable[Item], commands: Collection[str]) -> None:
    """SettingError (``manifest``) for an item whose command is not in ``commands`` or whose output is not a
    relative ``.png`` path inside the output directory. The items' arguments are the caller's to check."""
    for item in items:
        if item.command not in commands:
            raise SettingError("manifest", f"command must be one of {', '.join(commands)}; got {item.command!r}")
        output = Path(item.output)
        if not item.output.endswith(".png") or output.is_absolute() or ".." in output.parts:
            rule = f"output must be a relative .png path inside the output directory; got {item.output!r}"
            raise SettingError("manifest", rule)


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
    for item in tqdm(mine, desc=f"{desc} [{state.process_index}]", position=position, leave=False):
        if work(item, root / item.output):
            done.append(item.output)
    state.wait_for_everyone()
    return done
