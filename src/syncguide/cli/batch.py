"""``syncguide batch``: generate every item of a manifest, split across ``accelerate launch`` processes.

Each item is a ``panorama`` command line (its ``--out`` is the item's output under ``--out``); models are loaded
once per process. The whole manifest is checked before the first item runs: its lines, and every item's
arguments as ``panorama`` checks them before any work (values, sizes against the model, steps against the
scheduler, device, files); a bad line is one error ``MANIFEST:LINE: rule``. Rerunning the same command after an
interruption finishes the missing items only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from syncguide.cli import panorama
from syncguide.cli.guidance_args import check_guidance_options, wants_guidance
from syncguide.cli.io import check_writable, save_png
from syncguide.cli.loading import resolve_device
from syncguide.cli.options import usage_message
from syncguide.errors import SettingError, UsageError
from syncguide.scaleout import (
    Item,
    ManifestError,
    check_manifest,
    existing_ancestor,
    pending,
    process_state,
    read_manifest,
    run_items,
)
from syncguide.schedulers import check_steps

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
    try:
        items = read_manifest(args.manifest)
    except ManifestError as error:
        raise UsageError(str(error)) from None  # MANIFEST:LINE: rule (not the SettingError's "MANIFEST: line N")
    check_items(items, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    state = process_state()
    written = generate_items(items, args.out, state)
    report = {"process": state.process_index, "processes": state.num_processes, "written": written}
    sys.stdout.write(json.dumps(report) + "\n")  # one write per line: processes share the launcher's stdout
    sys.stdout.flush()
    return 0


class ItemError(UsageError):
    """An item whose arguments are bad: ``MANIFEST:LINE: reason`` (``reason`` names the item's option)."""

    def __init__(self, item: Item, reason: str) -> None:
        super().__init__(f"MANIFEST:{item.line}: {reason}" if item.line else f"MANIFEST: {item.output}: {reason}")
        self.item = item
        self.reason = reason


def check_items(items: list[Item], root: Path | None = None) -> None:
    """UsageError for the first item this command cannot run or whose arguments are bad, before anything is
    generated: the manifest's rules (:func:`syncguide.scaleout.check_manifest`, with the output directory
    ``root`` if given), then each item's arguments as ``panorama`` checks them (:func:`check_arguments`)."""
    try:
        check_manifest(items, COMMANDS, root)
    except ManifestError as error:
        raise UsageError(str(error)) from None  # MANIFEST:LINE: rule (not the SettingError's "MANIFEST: line N")
    parser = item_parser()
    checked: dict[Any, Any] = {}  # model configs, schedulers, devices: read once for all the items
    for item in items:
        try:
            check_arguments(parse_item(parser, item), checked)
        except SettingError as error:
            raise ItemError(item, usage_message(error)) from None
        except UsageError as error:
            raise ItemError(item, str(error)) from None
    if root is not None:
        check_directories(items, root)


class ItemParseError(UsageError):
    """argparse's reason for refusing an item's arguments (raised, never printed)."""


class _ItemParser(argparse.ArgumentParser):
    """A parser of item arguments: argparse's errors are raised (:class:`ItemParseError`), nothing is printed and
    nothing exits (``--help`` included)."""

    def error(self, message: str) -> NoReturn:
        raise ItemParseError(message.removeprefix("argument "))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ItemParseError((message or "").strip() or "not an item argument")

    def print_help(self, file: Any = None) -> NoReturn:
        raise ItemParseError("-h/--help: not an item argument")

    def print_usage(self, file: Any = None) -> NoReturn:
        raise ItemParseError("not an item argument")


def item_parser() -> argparse.ArgumentParser:
    """The parser of manifest items: ``COMMAND ARGS`` for each command in :data:`COMMANDS`, raising on errors.

    ``--out`` has no default: an item's output is its manifest path, so ``--out`` in its arguments is refused.
    """
    parser = _ItemParser(prog="syncguide", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ItemParser)
    panorama.add_parser(sub)
    sub.choices["panorama"].set_defaults(out=None)
    return parser


def parse_item(parser: argparse.ArgumentParser, item: Item, path: Path | None = None) -> argparse.Namespace:
    """``item``'s arguments parsed (``--out`` set to ``path``); ItemParseError with argparse's reason."""
    args = parser.parse_args([item.command, *item.args])
    if args.out is not None:
        raise ItemParseError("--out: not an item argument (an item's output is its manifest output under --out)")
    if getattr(args, "from_png", None) is not None:
        raise ItemParseError("--from: not an item argument (give an item its settings as arguments)")
    if args.window_parallel:
        raise ItemParseError("--window-parallel: not an item argument (batch splits its items across processes)")
    if args.prompt is None:
        raise ItemParseError("PROMPT: a prompt is required")
    args.out = path
    return args


def check_arguments(args: argparse.Namespace, checked: dict[Any, Any] | None = None) -> None:
    """What :func:`syncguide.cli.panorama.prepare` checks before any work, without loading any model or network.

    The settings' rules, the guidance options (reading the reference images), the device, the model's configs
    (window, VAE scale, scheduler) and the settings against them, the steps against the scheduler, the sync
    loss's weights file. ``checked`` caches what many items share (model configs, devices) across calls.
    UsageError or SettingError naming the option. (The output path is the manifest's, checked by
    :func:`syncguide.scaleout.check_manifest`; a guidance CLIP's resolution is checked when it is loaded.)
    """
    checked = {} if checked is None else checked
    args = argparse.Namespace(**vars(args))  # the guidance checks fill values in: never the caller's namespace
    given = panorama.given_settings(args, False)
    check_guidance_options(args)
    _once(checked, ("device", args.device), lambda: resolve_device(args.device))
    # panorama's own model resolution (the demo bundle when there is no --model); see the report: panorama.py
    # would ideally expose this check half of prepare() as a public function.
    model, demo = _once(checked, ("model", args.model), lambda: panorama._model(args.model, quiet=True))
    perceptual = args.perceptual if args.perceptual != "auto" else ("demo-clip" if demo else "lpips-vgg")
    key = ("geometry", model, args.scheduler)
    geometry = _once(checked, key, lambda: panorama.model_geometry(model, args.scheduler))
    settings = panorama.resolve_settings(given, args.method, geometry, demo, perceptual)
    steps = settings.num_inference_steps
    _once(checked, ("steps", *key, steps), lambda: check_steps(geometry.scheduler, steps))
    if settings.syncs:
        _once(checked, ("loss", perceptual, args.lpips_weights), lambda: check_loss(perceptual, args.lpips_weights))
    if wants_guidance(args) and not (args.clip or demo):
        raise UsageError("--clip: text, content and style guidance need a CLIP (e.g. --clip demo-noise-aware)")


def check_loss(perceptual: str, weights: Path | None) -> None:
    """UsageError if the sync loss ``perceptual`` cannot be had: an lpips-vgg weights file that is not there, or
    torchvision's VGG16 weights neither cached nor downloadable (then fetched now, as panorama would)."""
    if perceptual != "lpips-vgg":
        return
    if weights is not None:
        if not weights.expanduser().is_file():
            raise UsageError(f"--lpips-weights: no such file: {weights}")
        return
    if not panorama.vgg16_weights()[1].is_file():
        panorama.perceptual_loss(perceptual, resolve_device("cpu"))  # downloads into the cache, or one-line error


def check_directories(items: list[Item], root: Path) -> None:
    """UsageError (``--out``) unless the pending items' files can be created: the nearest existing directory of
    each (``root`` or above it) must be writable."""
    directories = set()
    for item in pending(items, root):
        parent = (root / item.output).parent
        directories.add(existing_ancestor(parent, "out") or Path.cwd())
    for directory in sorted(directories):
        check_writable(directory, "--out")


def _once(cache: dict[Any, Any], key: Any, compute: Callable[[], Any]) -> Any:
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def generate_items(items: list[Item], root: Path, state: Any = None) -> list[str]:
    """Run the pending share of ``items`` in this process (:func:`syncguide.scaleout.run_items`)."""
    parser = item_parser()
    pipelines: dict = {}
    state = state or process_state()

    def work(item: Item, path: Path) -> bool:
        args = parse_item(parser, item, path)
        if args.device == "auto":  # one device per process (cuda:LOCAL_RANK under accelerate), else cpu
            args.device = str(state.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        job = panorama.prepare(args, pipelines, quiet=True)
        job.pipe.set_progress_bar_config(disable=True)
        image = job.pipe(job.prompt, **job.call_arguments()).images[0]
        try:  # write_atomic defers Ctrl-C / SIGTERM while the file gets its name
            save_png(image, path, job.parameters, overwrite=False)
        except UsageError:  # written meanwhile by another run: it is complete, keep it
            return False
        return True

    return run_items(items, root, work, state, desc="generate")
