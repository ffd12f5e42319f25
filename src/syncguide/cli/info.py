"""``syncguide info FILE.png``: print the settings a PNG stores (ours, or another tool's AUTOMATIC1111 text)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from syncguide.cli.recall import stored_settings
from syncguide.pngmeta import a1111_text

FORMATS = ("json", "a1111")


def add_parser(sub: Any) -> None:
    """Register the ``info`` subcommand."""
    p = sub.add_parser("info", help="print the settings stored in a PNG", description=__doc__)
    p.add_argument("png", type=Path, metavar="FILE.png", help="a PNG written by syncguide (or AUTOMATIC1111)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json (default: every setting, indented) or a1111 (AUTOMATIC1111's text form)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the stored settings to stdout."""
    settings = stored_settings(args.png, "FILE.png")
    if args.format == "json":
        print(json.dumps(settings, indent=2, sort_keys=True, allow_nan=False))
    else:
        print(a1111_text(settings))
    return 0
