"""``--from FILE.png``: rerun with the settings a PNG stores, the options given on the command line overriding.

The stored settings (:func:`syncguide.pngmeta.read_parameters`: ours, or another tool's AUTOMATIC1111 text) become
option tokens placed before the user's own, so argparse checks them exactly as typed options and a later option
wins. A setting the command has no option for is ignored; so is ``device`` (the machine's, not the image's).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from syncguide.cli.control_args import CONTROL_OPTIONS
from syncguide.cli.options import key_option
from syncguide.cli.parser import option_actions, subcommands
from syncguide.errors import UsageError
from syncguide.images import read_image
from syncguide.pngmeta import read_parameters

IGNORED = frozenset({"device", "out", "seconds", "syncguide", "prompt", "background", "regions", "index", "start", "n"})
"""Stored keys that are not options to repeat (the prompt and regions are placed by :func:`expand`)."""
REGION_OPTIONS = ("--region", "--box")


def add_from_option(p: argparse.ArgumentParser) -> None:
    """Register ``--from FILE.png`` on command parser ``p``."""
    p.add_argument(
        "--from",
        dest="from_png",
        type=Path,
        metavar="FILE.png",
        help="take every setting stored in a PNG (ours, or AUTOMATIC1111's text) except the device;"
        " options given here override",
    )


def stored_settings(path: Path, option: str = "--from") -> dict[str, Any]:
    """The settings stored in ``path``; UsageError naming ``option`` if it is unreadable, stores none, or stores
    numbers that are not finite."""
    try:
        read_image(path, "RGB").close()  # one line for a missing, truncated or oversized file
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None
    try:
        settings = read_parameters(path)
        json.dumps(settings, allow_nan=False)
    except KeyError:
        raise UsageError(f"{option}: {path} stores no generation settings (no 'parameters' text chunk)") from None
    except ValueError as error:
        raise UsageError(f"{option}: {path}: its stored settings cannot be read ({error})") from None
    return settings


def expand(parser: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace) -> list[str]:
    """``argv`` with the settings of ``args.from_png`` inserted after the subcommand, as option tokens.

    The stored prompt becomes ``--background`` for ``layout`` and the PROMPT positional otherwise (only where
    none is given); stored regions are used unless ``--region`` or ``--box`` is given; a ``generate`` sample's
    index becomes ``--start INDEX --n 1`` (that sample alone)."""
    settings = stored_settings(args.from_png)
    options = _command_options(parser, args.command)
    tokens = [t for key, value in sorted(settings.items()) for t in _tokens(key, value, options)]
    if isinstance(settings.get("index"), int) and "--start" in options:  # one sample of generate: remake it alone
        tokens += ["--start", str(settings["index"]), "--n", "1"]
    index = argv.index(args.command) + 1
    rest = argv[index:]
    prompt = settings.get("prompt", settings.get("background"))
    tail: list[str] = []
    if isinstance(prompt, str):
        if "--background" in options:
            tokens = ["--background", prompt, *tokens]
        elif getattr(args, "prompt", "") is None:
            tail = ["--", prompt]
    if "--region" in options and not any(t.split("=")[0] in REGION_OPTIONS for t in rest):
        tokens += _region_tokens(settings.get("regions"), args.from_png)
    if "--controlnet" in options and not any(t.split("=")[0] in CONTROL_OPTIONS for t in rest):
        tokens += _control_tokens(settings.get("control"), args.from_png)
    return [*argv[:index], *tokens, *rest, *tail]


def _command_options(parser: argparse.ArgumentParser, command: str) -> dict[str, argparse.Action]:
    """The option strings of subcommand ``command`` and their actions."""
    return option_actions(subcommands(parser)[command])


def _tokens(key: str, value: Any, options: dict[str, argparse.Action]) -> list[str]:
    """The tokens that set stored ``key`` to ``value`` (none if the command has no such option or it is unset)."""
    option = key_option(key)
    if key in IGNORED or option not in options or value is None or value is False:
        return []
    if value is True:
        return [option] if options[option].nargs == 0 else [option, "true"]
    if isinstance(value, list):
        return [option, ",".join(str(v) for v in value)]
    return [option, str(value)]


def _control_tokens(control: Any, path: Path) -> list[str]:
    """``--controlnet ID --control-image FILE --control-scale S`` tokens of the stored ControlNets."""
    if control is None:
        return []
    keys = ("controlnet", "image", "scale")
    if not isinstance(control, list) or not all(isinstance(c, dict) and all(k in c for k in keys) for c in control):
        raise UsageError(f"--from: {path}: its stored control is not a list of {{controlnet, image, scale}}")
    tokens = []
    for item in control:
        tokens += ["--controlnet", str(item["controlnet"]), "--control-image", str(item["image"])]
        tokens += ["--control-scale", str(item["scale"])]
    return tokens


def _region_tokens(regions: Any, path: Path) -> list[str]:
    """``--region PROMPT MASK`` / ``--box PROMPT BOX`` tokens of a layout's stored regions."""
    if regions is None:
        return []
    well_formed = isinstance(regions, list) and all(isinstance(r, dict) for r in regions)
    if not well_formed or not all(isinstance(r.get("prompt"), str) for r in regions):
        raise UsageError(f"--from: {path}: its stored regions are not a list of {{prompt, mask or box}}")
    tokens = []
    for region in regions:
        kind = "mask" if "mask" in region else "box"
        tokens += [f"--{'region' if kind == 'mask' else 'box'}", region["prompt"], str(region.get(kind, ""))]
    return tokens
