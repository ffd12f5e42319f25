"""``syncguide finetune-clip``: fine-tune a CLIP image encoder to read noisy images (noise-aware CLIP of SDG)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from syncguide.cli.io import check_output_dir
from syncguide.cli.loading import resolve_device
from syncguide.cli.options import check_ranges, seed
from syncguide.errors import SettingError, UsageError

MAX_STEPS = 10_000_000
"""Most training steps one run asks for (--steps)."""
MAX_BATCH_SIZE = 1024
"""Largest training batch (--batch-size), as :data:`syncguide.finetune_clip.MAX_BATCH_SIZE`."""


def add_parser(sub: Any) -> None:
    """Register the ``finetune-clip`` subcommand."""
    p = sub.add_parser("finetune-clip", help="noise-aware CLIP fine-tuning (self-supervised)", description=__doc__)
    p.add_argument("--clip", default="demo", help="CLIP to start from: demo, a directory, a hub id, open_clip:ARCH/TAG")
    p.add_argument("--data", default="demo", help="directory of clean training images, or demo (world crops)")
    p.add_argument(
        "--diffusion",
        default="demo",
        help="the unconditional DDPM pipeline (UNet2DModel + scheduler) whose noise it learns (default demo DDPM)",
    )
    p.add_argument(
        "--steps",
        type=int,
        required=True,
        help=f"total training steps, 1 .. {MAX_STEPS:,} (a rerun resumes to it)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory: the encoder and its checkpoint")
    p.add_argument(
        "--batch-size", type=int, default=32, help=f"2 .. {MAX_BATCH_SIZE} (default 32, the paper's per-GPU batch)"
    )
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate, finite and > 0 (default 1e-4)")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2^64 - 1 (default 0)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> None:
    """UsageError for input that is wrong whatever the models (before anything loads)."""
    check_ranges(
        args,
        (
            ("steps", 1, MAX_STEPS),
            ("batch_size", 2, MAX_BATCH_SIZE),
            ("checkpoint_every", 1, None),
        ),
    )
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr: must be finite and > 0; got {args.lr}")
    if args.data != "demo" and not Path(args.data).is_dir():
        raise UsageError(f"--data: {args.data} is not a directory (or demo)")
    check_output_dir(args.out)


def run(args: argparse.Namespace) -> int:
    """Fine-tune (or resume), export, print where the encoder is."""
    from syncguide.finetune_clip import FinetuneSettings, finetune
    from syncguide.training import CheckpointMismatch

    check_arguments(args)
    settings = FinetuneSettings(args.clip, args.data, args.diffusion, args.batch_size, args.lr, args.seed)
    device = resolve_device(args.device)
    try:
        out = finetune(args.out, settings, args.steps, args.checkpoint_every, not args.restart, device)
    except SettingError:
        raise  # named by its setting: the command line maps it to the option once
    except CheckpointMismatch as error:
        raise UsageError(f"--out: {error}; give another --out, or --restart to start over") from None
    except ValueError as error:
        raise UsageError(str(error).splitlines()[0]) from None
    print(json.dumps({"out": str(out), "steps": args.steps}))
    return 0
