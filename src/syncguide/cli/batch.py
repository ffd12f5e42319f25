"""``syncguide batch``: generate every item of a manifest, split across ``accelerate launch`` processes.

Each item is a ``panorama`` command line (its ``--out`` is the item's output under ``--out``); models are loaded
once per process. Rerunning the same command after an interruption finishes the missing items only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from syncguide.cli import panorama
from syncguide.cli.io import save_png
from syncguide.cli.parser import make_parser
from syncguide.errors import UsageError
from syncguide.scaleout import Item, check_manifest, process_state, read_manifest, run_items

COMMANDS = ("panorama",)
"""The commands a manifest item may name (each is parsed by that command's own parser)."""


def add_parser(sub: Any) -> None:
    """Register the ``batch`` subcommand."""
    p = sub.add_parser("batch", help="generate a manifest's items (resumable; accelerate launch splits it)")
    p.add_argument("manifest", type=Path, help="JSON lines: {output, command, args}")
    p.add_argument("--out", type=Path, required=True, help="directory the items' outputs are written under")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate this process's missing items; print one JSON line with what it wrote."""
    items = read_manifest(args.manifest)
    check_items(items)
    args.out.mkdir(parents=True, exist_ok=True)
    state = process_state()
    written = generate_items(items, args.out, state)
    report = {"process": state.process_index, "processes": state.num_processes, "written": written}
    sys.stdout.write(json.dumps(report) + "\n")  # one write per line: processes share the launcher's stdout
    sys.stdout.flush()
    return 0


def check_items(items: list[Item]) -> None:
    """UsageError for items this command cannot run or whose arguments are bad (before anything is generated)."""
    check_manifest(items, COMMANDS)
    parser = make_parser([panorama])
    for item in items:
        try:
            parser.parse_args([item.command, *item.args])
        except SystemExit:
            raise UsageError(f"MANIFEST: bad arguments for {item.output}: {' '.join(item.args)}") from None


def generate_items(items: list[Item], root: Path, state: Any = None) -> list[str]:
    """Run the pending share of ``items`` in this process (:func:`syncguide.scaleout.run_items`)."""
    parser = make_parser([panorama])
    pipelines: dict = {}
    state = state or process_state()

    def work(item: Item, path: Path) -> bool:
        args = parser.parse_args([item.command, *item.args, "--out", str(path)])
        if args.device == "auto":  # one device per process (cuda:LOCAL_RANK under accelerate), else cpu
            args.device = str(state.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        job = panorama.prepare(args, pipelines, quiet=True)
        job.pipe.set_progress_bar_config(disable=True)
        image = job.pipe(job.prompt, **job.call_arguments()).images[0]
        try:
            save_png(image, path, job.parameters, overwrite=False)
        except UsageError:  # written meanwhile by another run: it is complete, keep it
            return False
        return True

    return run_items(items, root, work, state, desc="generate")
