"""``syncguide reproduce``: the SyncDiffusion paper's evaluation protocol end to end.

Parses into :class:`syncguide.evaluation.protocol.ReproduceSettings` and runs
:func:`syncguide.evaluation.protocol.reproduce`, which generates its manifest's items through ``syncguide batch``
(each item is a ``panorama`` command line). Without ``--model`` it runs in the demo world. Every option, and
every item of the manifest they make, is checked before anything is written (the manifest included).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncguide.cli.options import command_line, settings_from
from syncguide.cli.panorama import DTYPES, PERCEPTUAL
from syncguide.errors import UsageError
from syncguide.settings import SYNC_MODES


def add_parser(sub: Any) -> None:
    """Register the ``reproduce`` subcommand."""
    p = sub.add_parser("reproduce", help="the paper's protocol: generate, evaluate, tabulate, plot")
    p.add_argument("--model", help="Stable Diffusion hub id or directory (default: the bundled demo model)")
    p.add_argument("--prompts", type=Path, help="prompt file, one per line (default: the demo prompts)")
    p.add_argument("--seeds", type=int, default=16, help="panoramas per prompt and method (default 16)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 5.0, 10.0, 20.0], help="sync w0 values")
    p.add_argument("--references", type=int, help="reference images per prompt (default 2 x --seeds)")
    p.add_argument("--width", type=int, help="panorama width in px (default 6 windows)")
    p.add_argument("--steps", type=int, help="denoising steps (default: panorama's)")
    p.add_argument(
        "--perceptual", choices=PERCEPTUAL, default="auto", help="sync loss (see syncguide panorama; default auto)"
    )
    p.add_argument(
        "--sync-mode",
        choices=SYNC_MODES,
        default="exact",
        help="SyncDiffusion's gradient (see syncguide panorama; default exact); another mode needs a new --out",
    )
    p.add_argument("--networks", choices=("auto", "demo", "real"), default="auto", help="metric networks")
    for option in ("--lpips-weights", "--vgg19-weights", "--inception-weights"):
        p.add_argument(option, type=Path, help="real metric network weights (see syncguide eval)")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16", help="real CLIP-S model")
    p.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("reproduce"), help="run directory (default ./reproduce)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the protocol (each step skips the work already done); the main process prints the README."""
    from syncguide.cli import batch
    from syncguide.evaluation.protocol import ReproduceSettings, reproduce
    from syncguide.evaluation.run import NetworkSettings
    from syncguide.scaleout import process_state

    networks = settings_from(NetworkSettings, args, name=args.networks)
    settings = settings_from(
        ReproduceSettings, args, weights=tuple(args.weights), networks=networks, command_line=command_line()
    )

    def check(items: list) -> None:
        """The items' arguments as batch checks them; an item's option is the reproduce option that set it."""
        try:
            batch.check_items(items, settings.out)
        except batch.ItemError as error:
            raise UsageError(error.reason) from None

    reproduce(settings, batch.generate_items, check)  # checks everything before writing or starting anything
    if process_state().is_main_process:
        print((settings.out / "README.md").read_text())
    return 0
