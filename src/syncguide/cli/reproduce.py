"""``syncguide reproduce``: the SyncDiffusion paper's evaluation protocol end to end.

MultiDiffusion and SyncDiffusion at every ``--weights`` w0 (0 is MultiDiffusion) over a prompt set and seeds,
reference images from the same model at window size, then ``syncguide eval`` on them: a Table-1-style table, the
trade-off plot and a strip comparing the methods on the same seeds. Every step is a resumable manifest
(rerun the command to finish an interrupted run) and splits across ``accelerate launch`` processes. Without
``--model`` it runs in the demo world (bundled model, demo metric networks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from syncguide.errors import UsageError
from syncguide.scaleout import Item

DEMO_PROMPTS = ("a photo of mountains", "a landscape by a lake", "a photo of hills with trees")
"""Prompts that leave the demo world's global attributes (time of day, season) open."""


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
    p.add_argument("--perceptual", default="auto", help="sync loss (see syncguide panorama; default auto)")
    p.add_argument("--networks", choices=("auto", "demo", "real"), default="auto", help="metric networks")
    for option in ("--lpips-weights", "--vgg19-weights", "--inception-weights"):
        p.add_argument(option, type=Path, help="real metric network weights (see syncguide eval)")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16", help="real CLIP-S model")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("reproduce"), help="run directory (default ./reproduce)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Manifest, generation, evaluation, strip and README; each step skips the work already done."""
    from syncguide.cli import batch
    from syncguide.scaleout import process_state, read_manifest, write_manifest

    prompts = check_arguments(args)
    items = manifest(args, prompts, window_pixels(args.model))
    state = process_state()
    if state.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
        write_manifest(items, args.out / "manifest.jsonl")
    state.wait_for_everyone()
    items = read_manifest(args.out / "manifest.jsonl")
    start = time.perf_counter()
    batch.check_items(items)
    batch.generate_items(items, args.out, state)
    results = evaluate(args, state)
    if state.is_main_process:
        strip(items, args.out / "panoramas", args.out / "strip.png", prompts[0], min(args.seeds, 4))
        write_readme(args, results, time.perf_counter() - start, len(prompts), state.num_processes)
        print((args.out / "README.md").read_text())
    return 0


def check_arguments(args: argparse.Namespace) -> list[str]:
    """UsageError for bad options; returns the prompts."""
    from syncguide.evaluation.inputs import read_prompts

    if args.seeds < 2:
        raise UsageError(f"--seeds: must be >= 2 (intervals and FID need two panoramas); got {args.seeds}")
    if any(w < 0 for w in args.weights) or len(set(args.weights)) != len(args.weights):
        raise UsageError(f"--weights: must be distinct and >= 0; got {args.weights}")
    if args.references is not None and args.references < 1:
        raise UsageError(f"--references: must be >= 1; got {args.references}")
    if args.model is not None and args.prompts is None:
        raise UsageError("--prompts: required with --model (the default prompts describe the demo world)")
    return read_prompts(args.prompts) if args.prompts else list(DEMO_PROMPTS)


def manifest(args: argparse.Namespace, prompts: list[str], window: int) -> list[Item]:
    """Panorama items for every (prompt, seed, w0) and reference items at window size (``window`` px, one
    window: plain sampling) for every prompt."""
    common = [*(["--model", args.model] if args.model else []), "--dtype", args.dtype, "--device", args.device]
    common += ["--perceptual", args.perceptual]
    common += ["--steps", str(args.steps)] if args.steps else []
    width = ["--width", str(args.width or 6 * window)]  # the paper: 6 non-overlapping window-size crops
    items = []
    for p, prompt in enumerate(prompts):
        for w in args.weights:
            method = (
                ["--method", "multidiffusion"] if w == 0 else ["--method", "syncdiffusion", "--sync-weight", f"{w:g}"]
            )
            for seed in range(args.seeds):
                items.append(
                    Item(
                        f"panoramas/{_method_name(w)}-p{p:02d}-s{seed:04d}.png",
                        "panorama",
                        (prompt, "--seed", str(seed), *method, *width, *common),
                        {"prompt": p, "seed": seed, "weight": w},
                    )
                )
        size = ["--width", str(window), "--height", str(window)]
        for r in range(args.references if args.references is not None else 2 * args.seeds):
            seed = 100_000 + r
            items.append(
                Item(
                    f"references/p{p:02d}-s{seed}.png",
                    "panorama",
                    (prompt, "--seed", str(seed), "--method", "multidiffusion", *size, *common),
                    {"prompt": p, "seed": seed, "reference": True},
                )
            )
    return items


def _method_name(w: float) -> str:
    return "multidiffusion" if w == 0 else f"sync{w:g}"


def window_pixels(model: str | None) -> int:
    """The window (training resolution) in pixels of a Stable Diffusion model, from its configs only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from syncguide.cli.loading import check_model
    from syncguide.demo.bundled import bundled

    spec = model or str(bundled("sd"))
    check_model(spec)
    try:
        unet = UNet2DConditionModel.load_config(spec, subfolder="unet")
        vae = AutoencoderKL.load_config(spec, subfolder="vae")
    except Exception as error:  # unreadable or unreachable configs: one line naming the option
        raise UsageError(f"--model: cannot read the configs of {spec}: {str(error).splitlines()[0]}") from None
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def evaluate(args: argparse.Namespace, state: Any) -> dict[str, Any]:
    """``syncguide eval`` on the generated panoramas against the references, report under ``OUT/eval``."""
    from syncguide.cli import evaluate as eval_cli
    from syncguide.cli.main import build_parser

    argv = ["eval", str(args.out / "panoramas"), "--reference", str(args.out / "references")]
    argv += ["--out", str(args.out / "eval"), "--networks", args.networks, "--device", args.device]
    argv += ["--clip-model", args.clip_model]
    for name in ("lpips_weights", "vgg19_weights", "inception_weights"):
        if getattr(args, name):
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    eval_args = build_parser().parse_args(argv)
    inputs = eval_cli.check_inputs(eval_args)
    return eval_cli.evaluate(eval_args, *inputs, state)


def strip(items: list[Item], directory: Path, path: Path, prompt: str, n_seeds: int, height: int = 128) -> Path:
    """A picture of the first prompt's panoramas for seeds ``0..n_seeds-1``: one row per method (by w0), seeds
    one under the other, each row ``height`` px tall with the method's name on its left."""
    from syncguide.cli.io import save_png

    mine = [i for i in items if i.meta.get("prompt") == 0 and "weight" in i.meta and i.meta["seed"] < n_seeds]
    mine.sort(key=lambda i: (i.meta["seed"], i.meta["weight"]))
    rows = []
    for item in mine:
        with Image.open(directory.parent / item.output) as image:
            row = image.convert("RGB").resize((image.width * height // image.height, height), Image.NEAREST)
        label = Image.new("RGB", (150, height), "white")
        name = "MultiDiffusion" if item.meta["weight"] == 0 else f"SyncDiffusion w={item.meta['weight']:g}"
        ImageDraw.Draw(label).text((6, height // 2 - 12), f"{name}\nseed {item.meta['seed']}", fill="black")
        rows.append(np.concatenate([np.asarray(label), np.asarray(row)], axis=1))
        if item.meta["weight"] == max(i.meta["weight"] for i in mine):
            rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1])
    save_png(Image.fromarray(grid), path, {"prompt": prompt, "seeds": n_seeds}, overwrite=True)
    return path


def write_readme(
    args: argparse.Namespace, results: dict[str, Any], seconds: float, n_prompts: int, processes: int = 1
) -> Path:
    """``OUT/README.md``: the command, how long it took, the table, the pictures and the networks."""
    from syncguide.atomic import write_atomic

    command = "syncguide " + " ".join(sys.argv[1:])
    if processes > 1:  # CPU processes are launched torchrun-style (see syncguide.scaleout.process_state)
        import torch

        launcher = "accelerate launch" + ("" if torch.cuda.is_available() else " --multi_gpu")
        command = f"{launcher} --num_processes {processes} -m syncguide.cli.main " + " ".join(sys.argv[1:])
    table = (args.out / "eval" / "results.md").read_text()
    text = f"""# SyncDiffusion's protocol: reproduction

Command: `{command}` ({seconds / 60:.1f} min for the work this run did; a rerun skips finished items).

{len(results.get("methods", {}))} methods x {args.seeds} seeds x {n_prompts} prompts; \
references: {results.get("n_references", 0)} window-size images from the same model and prompts.

{table}
Pictures: `strip.png` (first prompt, the same seeds for every method), `eval/metrics.png` (every metric per
method with its interval), `eval/tradeoff.png` (every metric against the sync weight).

Raw numbers: `eval/results.json`; the work list: `manifest.jsonl`.
"""
    path = args.out / "README.md"
    write_atomic(path, text.encode(), overwrite=True)
    return path
