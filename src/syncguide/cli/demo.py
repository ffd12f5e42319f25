"""``syncguide demo``: render the demo world, make edge maps of it (the demo ControlNet's control images), train
its bundled models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from PIL import Image

from syncguide.cli.io import check_output, check_output_dir, save_png
from syncguide.cli.options import seed
from syncguide.demo.train import RECIPES, recipe
from syncguide.demo.world import MIN_WIDTH, SEASONS, TIMES, generate, labels_to_json
from syncguide.errors import UsageError
from syncguide.settings import MAX_SIDE

RUNS = Path("runs")


def add_parser(sub: Any) -> None:
    """Register ``demo world`` and ``demo train``."""
    demo = sub.add_parser("demo", help="the offline demo world", description=__doc__)
    commands = demo.add_subparsers(dest="demo_command", required=True, parser_class=type(demo))
    world = commands.add_parser("world", help="render one landscape panorama with its labels")
    world.add_argument("--seed", type=seed, default=0, help="world seed, 0 .. 2^64 - 1 (default 0)")
    world.add_argument(
        "--width", type=int, default=512, help=f"pixels, {MIN_WIDTH} .. {MAX_SIDE} (height is 64; default 512)"
    )
    world.add_argument("--time", choices=TIMES, help="fix the time of day")
    world.add_argument("--season", choices=SEASONS, help="fix the season")
    world.add_argument("--out", type=Path, default=Path("world.png"))
    world.add_argument("--overwrite", action="store_true")
    world.set_defaults(run=run_world)
    edges = commands.add_parser("edges", help="the edge map of an image, as the demo ControlNet reads it")
    edges.add_argument("image", type=Path, help="an image file (e.g. from demo world)")
    edges.add_argument("--out", type=Path, default=Path("edges.png"))
    edges.add_argument("--overwrite", action="store_true")
    edges.set_defaults(run=run_edges)
    train = commands.add_parser("train", help="train a bundled model (deterministic, resumable)")
    train.add_argument("name", choices=tuple(RECIPES))
    train.add_argument("--out", type=Path, help="run directory (default runs/NAME); checkpoints and the model")
    train.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    train.add_argument("--seed", type=seed, default=0, help="training seed, 0 .. 2^64 - 1 (default 0)")
    train.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    train.add_argument(
        "--vae", type=Path, default=RUNS / "vae" / "model", help="sd and vae-decoder: the trained demo VAE"
    )
    train.set_defaults(run=run_train)


def run_world(args: argparse.Namespace) -> int:
    """Render, save the PNG with its labels (text chunk), print the labels as one JSON line."""
    if not MIN_WIDTH <= args.width <= MAX_SIDE:
        raise UsageError(f"--width: must be in [{MIN_WIDTH}, {MAX_SIDE}]; got {args.width}")
    check_output(args.out, args.overwrite)
    fixed = {k: getattr(args, k) for k in ("time", "season") if getattr(args, k) is not None}
    image, labels = generate(args.seed, args.width, **fixed)
    record = {"seed": args.seed, "width": args.width, "labels": labels_to_json(labels)}
    save_png(Image.fromarray(image), args.out, record, args.overwrite)
    print(json.dumps({**record, "out": str(args.out)}))
    return 0


def run_edges(args: argparse.Namespace) -> int:
    """Write the white-on-black edge map of ``args.image`` (:func:`syncguide.demo.train.controlnet.edge_map`)."""
    import numpy as np

    from syncguide.control import control_tensor
    from syncguide.demo.train.controlnet import edge_map
    from syncguide.images import read_image

    check_output(args.out, args.overwrite)
    try:
        image = read_image(args.image, "RGB")
    except ValueError as error:
        raise UsageError(f"image: {error}") from None
    edges = (edge_map(control_tensor(image))[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    save_png(Image.fromarray(edges), args.out, {"edges_of": str(args.image)}, args.overwrite)
    print(json.dumps({"image": str(args.image), "out": str(args.out), "edge_fraction": float(edges.mean() / 255)}))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Run (or resume) one recipe; print where the model is."""
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps: must be >= 1; got {args.steps}")
    out = args.out or RUNS / args.name
    check_output_dir(out)
    kwargs: dict[str, Any] = {"seed": args.seed, "resume": not args.restart}
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if args.name == "sd":
        if not (args.vae / "config.json").is_file():
            raise UsageError(f"--vae: {args.vae} is not a trained model directory")
        kwargs["vae_dir"] = args.vae
    if args.name == "vae-decoder":
        if not (args.vae / "config.json").is_file():
            raise UsageError(f"--vae: {args.vae} is not a trained model directory")
        kwargs["base_dir"] = args.vae
        kwargs.setdefault("steps", 2000)
    model = recipe(args.name)(out, **kwargs)
    print(json.dumps({"recipe": args.name, "model": str(model)}))
    return 0
