"""``syncguide finetune-clip``: fine-tune a CLIP image encoder to read noisy images (noise-aware CLIP of SDG)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from syncguide.cli.loading import resolve_device
from syncguide.errors import SettingError, UsageError


def add_parser(sub: Any) -> None:
    """Register the ``finetune-clip`` subcommand."""
    p = sub.add_parser("finetune-clip", help="noise-aware CLIP fine-tuning (self-supervised)", description=__doc__)
    p.add_argument("--clip", default="demo", help="CLIP to start from: demo, a directory, a hub id, open_clip:ARCH/TAG")
    p.add_argument("--data", default="demo", help="directory of clean training images, or demo (world crops)")
    p.add_argument("--diffusion", default="demo", help="the diffusion model whose noise it learns (default demo DDPM)")
    p.add_argument("--steps", type=int, required=True, help="total training steps (a rerun resumes up to this)")
    p.add_argument("--out", type=Path, required=True, help="output directory: the encoder and its checkpoint")
    p.add_argument("--batch-size", type=int, default=32, help="default 32 (the paper's per-GPU batch)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4, weight decay 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fine-tune (or resume), export, print where the encoder is."""
    from syncguide.finetune_clip import FinetuneSettings, finetune

    for option, low in (("steps", 1), ("batch_size", 2), ("checkpoint_every", 1)):
        if getattr(args, option) < low:
            raise UsageError(f"--{option.replace('_', '-')}: must be >= {low}; got {getattr(args, option)}")
    if args.lr <= 0:
        raise UsageError(f"--lr: must be > 0; got {args.lr}")
    if args.data != "demo" and not Path(args.data).is_dir():
        raise UsageError(f"--data: {args.data} is not a directory (or demo)")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a directory")
    settings = FinetuneSettings(args.clip, args.data, args.diffusion, args.batch_size, args.lr, args.seed)
    try:
        out = finetune(
            args.out, settings, args.steps, args.checkpoint_every, not args.restart, resolve_device(args.device)
        )
    except SettingError:
        raise  # named by its setting: the command line maps it to the option once
    except ValueError as error:
        raise UsageError(str(error).splitlines()[0]) from None
    print(json.dumps({"out": str(out), "steps": args.steps}))
    return 0
