"""What the protocol run writes besides the evaluation report: a strip of panoramas and ``README.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from syncguide.atomic import write_atomic
from syncguide.evaluation.inputs import method_label
from syncguide.pngmeta import write_png
from syncguide.scaleout import Item

LABEL_WIDTH = 150
"""Width in pixels of the method name left of each strip row."""


def strip(items: list[Item], directory: Path, path: Path, prompt: str, n_seeds: int, height: int = 128) -> Path:
    """A picture of the first prompt's panoramas for seeds ``0..n_seeds-1``: one row per method (by w0), seeds
    one under the other, each row ``height`` px tall with the method's name on its left."""
    mine = [i for i in items if i.meta.get("prompt") == 0 and "weight" in i.meta and i.meta["seed"] < n_seeds]
    mine.sort(key=lambda i: (i.meta["seed"], i.meta["weight"]))
    last_weight = max(i.meta["weight"] for i in mine)
    rows = []
    for item in mine:
        with Image.open(directory.parent / item.output) as image:
            row = image.convert("RGB").resize((image.width * height // image.height, height), Image.NEAREST)
        label = Image.new("RGB", (LABEL_WIDTH, height), "white")
        name = method_label({"method": "syncdiffusion", "sync_weight": item.meta["weight"]})
        ImageDraw.Draw(label).text((6, height // 2 - 12), f"{name}\nseed {item.meta['seed']}", fill="black")
        rows.append(np.concatenate([np.asarray(label), np.asarray(row)], axis=1))
        if item.meta["weight"] == last_weight:  # a gap after each seed's methods
            rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1])
    write_png(Image.fromarray(grid), path, {"prompt": prompt, "seeds": n_seeds}, overwrite=True)
    return path


def launch_command(command: str, processes: int) -> str:
    """``command`` as it was launched: under ``accelerate launch`` when more than one process ran it."""
    if processes <= 1:
        return command
    import torch

    launcher = "accelerate launch" + ("" if torch.cuda.is_available() else " --multi_gpu")  # CPU: torchrun-style
    arguments = command.removeprefix("syncguide").strip()
    return f"{launcher} --num_processes {processes} -m syncguide.cli.main {arguments}"


def write_readme(
    out: Path,
    command: str,
    results: dict[str, Any],
    seconds: float,
    *,
    seeds: int,
    n_prompts: int,
    processes: int = 1,
    sync_mode: str = "exact",
) -> Path:
    """``out/README.md``: the command, how long it took, the SyncDiffusion sync mode, the table
    (``out/eval/results.md``), the pictures and the networks."""
    command = launch_command(command, processes)
    table = (out / "eval" / "results.md").read_text()
    text = f"""# SyncDiffusion's protocol: reproduction

Command: `{command}` ({seconds / 60:.1f} min for the work this run did; a rerun skips finished items).

{len(results.get("methods", {}))} methods x {seeds} seeds x {n_prompts} prompts; SyncDiffusion sync mode: \
{sync_mode}; references: {results.get("n_references", 0)} window-size images from the same model and prompts.

{table}
Pictures: `strip.png` (first prompt, the same seeds for every method), `eval/metrics.png` (every metric per
method with its interval), `eval/tradeoff.png` (every metric against the sync weight).

Raw numbers: `eval/results.json`; the work list: `manifest.jsonl`.
"""
    path = out / "README.md"
    write_atomic(path, text.encode(), overwrite=True)
    return path
