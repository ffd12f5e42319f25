"""``syncguide eval``: the SyncDiffusion paper's metrics for a directory of panoramas, per method.

Parses into :class:`syncguide.evaluation.run.EvalSettings` and calls :func:`syncguide.evaluation.run.evaluate`
(resumable, split across ``accelerate launch`` processes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncguide.cli.options import command_line, settings_from
from syncguide.evaluation.records import PANORAMA_METRICS

if TYPE_CHECKING:
    from syncguide.evaluation.run import EvalSettings

NETWORKS = ("auto", "demo", "real")


def add_parser(sub: Any) -> None:
    """Register the ``eval`` subcommand."""
    p = sub.add_parser(
        "eval",
        help="evaluate panoramas (Intra-LPIPS, Intra-Style-L, GIQA, FID, KID, CLIP-S)",
        description="Evaluate a directory of panoramas per method. PNGs written by syncguide layout are evaluated "
        "as their own methods ('... (layout)') with their background prompt as the prompt (CLIP-S, --prompts). "
        "Judge agreement's interval is the 95%% Wilson score interval with n = the number of panoramas.",
    )
    p.add_argument(
        "panorama_dir",
        type=Path,
        metavar="PANORAMA_DIR",
        help="PNGs written by syncguide panorama (or layout: its background prompt is the prompt), one size",
    )
    p.add_argument("--reference", type=Path, help="window-size images from the same model (GIQA, FID, KID)")
    p.add_argument(
        "--prompts",
        type=Path,
        help="evaluate only panoramas with these prompts (UTF-8 text, one per line; a layout's background prompt)",
    )
    p.add_argument("--metrics", nargs="+", choices=PANORAMA_METRICS, help="default: all that the inputs allow")
    p.add_argument(
        "--networks",
        choices=NETWORKS,
        default="auto",
        help="metric networks: real (LPIPS-VGG, VGG19, Inception, CLIP ViT-B/16), demo (the demo world's), "
        "auto (demo for panoramas of the bundled demo model)",
    )
    p.add_argument("--lpips-weights", type=Path, help="real: local VGG16 trunk weights for LPIPS")
    p.add_argument("--vgg19-weights", type=Path, help="real: local torchvision VGG19 weights")
    p.add_argument("--inception-weights", type=Path, help="real: local FID Inception weights (pt_inception)")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16", help="real: CLIP hub id or directory")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap rounds for the FID interval (default 20)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="capped at the sample counts (default 1000)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    p.add_argument("--out", type=Path, help="report directory (default PANORAMA_DIR-eval)")
    p.add_argument("--overwrite", action="store_true", help="replace a report of other inputs in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate; the main process prints the table and one JSON line."""
    from syncguide.evaluation.run import evaluate
    from syncguide.scaleout import process_state

    settings = eval_settings(args)
    state = process_state()
    results = evaluate(settings, state)
    if state.is_main_process:
        print((settings.out_dir / "results.md").read_text())
        print(json.dumps({"out": str(settings.out_dir), "methods": list(results["methods"])}))
    return 0


def eval_settings(args: argparse.Namespace) -> EvalSettings:
    """The library settings of the parsed options (``--device auto``: the process's device)."""
    from syncguide.devices import resolve_device
    from syncguide.evaluation.run import EvalSettings, NetworkSettings

    return settings_from(
        EvalSettings,
        args,
        metrics=tuple(args.metrics) if args.metrics else None,
        networks=settings_from(NetworkSettings, args, name=args.networks),
        device=None if args.device == "auto" else resolve_device(args.device),
        command_line=command_line(),
    )
