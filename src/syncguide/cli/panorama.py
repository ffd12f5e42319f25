"""``syncguide panorama``: a MultiDiffusion or SyncDiffusion panorama from a text prompt."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from syncguide import __version__
from syncguide.cli.guidance_args import (
    add_guidance_options,
    build_guidance,
    check_guidance_options,
    fill_weights,
    guidance_parameters,
    load_guidance_clip,
    wants_guidance,
)
from syncguide.cli.io import check_output, save_png
from syncguide.cli.loading import load_pipeline, resolve_device
from syncguide.demo.bundled import bundled, is_bundled
from syncguide.errors import UsageError
from syncguide.guidance.perceptual import clip_feature_distance, lpips_vgg
from syncguide.schedulers import SCHEDULERS

METHODS = ("syncdiffusion", "multidiffusion")
PERCEPTUAL = ("auto", "lpips-vgg", "demo-clip", "lpips-random")
DEMO_WIDTH = 512
# The demo model runs in seconds: fewer steps, a coarser stride and the reference command's 10 synced steps.
DEMO_STEPS, DEMO_SYNC_STEPS = 25, 10
# w0 calibrated for the demo-clip distance (results/coherence_w2.md): 20 turns the demo panoramas uniform.
DEMO_SYNC_WEIGHT = 2.0
DEMO_BATCH = 8  # windows per call for the tiny demo model: batching pays on a CPU, memory is small
# SDG on latent models acts on decoded x0 predictions with a plain CLIP (clean images); weights text, content, style.
# Style 1e4 from the demo sweep (results/sdg_panorama: 3e3 does nothing measurable, 3e4 showed artefacts with an earlier
# demo SD); text, content uncalibrated.
PANORAMA_WEIGHTS = (1e3, 1e4, 1e4)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_parser(sub: Any) -> None:
    """Register the ``panorama`` subcommand."""
    p = sub.add_parser("panorama", help="generate a wide image", description=__doc__)
    p.add_argument("prompt", help="text prompt")
    add_sampler_options(p, guidance=True)
    p.add_argument("--out", type=Path, default=Path("panorama.png"), help="output PNG (default panorama.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def add_sampler_options(p: argparse.ArgumentParser, guidance: bool) -> None:
    """Register the model, size, sampler and sync options (shared with ``layout``); SDG's too if ``guidance``."""
    p.add_argument(
        "--model",
        help="diffusers Stable Diffusion pipeline: hub id or local directory (default: the bundled demo model)",
    )
    p.add_argument("--negative-prompt", default="", help="negative prompt (default empty, as in the paper)")
    p.add_argument("--height", type=int, help="pixels, a multiple of 8 (default: one window)")
    p.add_argument("--width", type=int, help="pixels, a multiple of 8 (default: 6 x height)")
    p.add_argument("--steps", type=int, help=f"denoising steps (default 50; {DEMO_STEPS} for the demo model)")
    p.add_argument("--cfg", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--stride", type=int, help="window stride in latent pixels (default window/4: 16 for SD 2-base)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--method", choices=METHODS, default="syncdiffusion")
    p.add_argument(
        "--sync-weight",
        type=float,
        help=f"SyncDiffusion w0 (default 20, the paper's for LPIPS-VGG; {DEMO_SYNC_WEIGHT} for the demo-clip loss)",
    )
    p.add_argument("--sync-decay", type=float, default=0.95, help="weight decay per step (default 0.95)")
    p.add_argument(
        "--sync-steps",
        type=int,
        help=f"synchronise during the first N steps (default all; {DEMO_SYNC_STEPS} for the demo)",
    )
    p.add_argument("--sync-every", type=int, default=1, help="synchronise every N steps (default 1)")
    p.add_argument(
        "--sync-batch-size", type=int, help=f"windows per gradient pass (default 1; {DEMO_BATCH} for the demo model)"
    )
    p.add_argument("--sync-checkpointing", action="store_true", help="gradient checkpointing in the sync pass")
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL,
        default="auto",
        help="sync loss: lpips-vgg (needs the VGG16 weights), demo-clip (tiny CLIP features), lpips-random (offline"
        " tests); auto (default) is demo-clip for the bundled demo model and lpips-vgg otherwise",
    )
    p.add_argument(
        "--view-batch-size", type=int, help=f"windows per UNet call (default 1; {DEMO_BATCH} for the demo model)"
    )
    if guidance:
        add_guidance_options(p, "1e3, content 1e4, style 1e4")
    p.add_argument("--circular", action="store_true", help="360-degree panorama: the right edge meets the left")
    p.add_argument("--scheduler", choices=tuple(SCHEDULERS), default="ddim", help="default ddim (the paper's)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")


def check_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError for input that is wrong whatever the model (before anything is loaded)."""
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value <= 0 or value % 8):
            raise UsageError(f"--{name}: must be a positive multiple of 8; got {value}")
    _at_least("--steps", args.steps, 1)
    _at_least("--stride", args.stride, 1)
    _at_least("--sync-every", args.sync_every, 1)
    _at_least("--sync-batch-size", args.sync_batch_size, 1)
    _at_least("--view-batch-size", args.view_batch_size, 1)
    for option in ("--sync-weight", "--sync-decay", "--sync-steps", "--cfg"):
        _at_least(option, getattr(args, option[2:].replace("-", "_")), 0)
    check_guidance_options(args)
    check_output(args.out, args.overwrite)


def _at_least(option: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise UsageError(f"{option}: must be >= {low}; got {value}")


def check_geometry(args: argparse.Namespace, window: int, scale: int) -> None:
    """Raise UsageError for sizes and strides that do not fit the model's window (latent pixels of ``scale`` px)."""
    pixels = window * scale
    for name in ("height", "width"):
        if getattr(args, name) < pixels:
            raise UsageError(f"--{name}: must be at least one window ({pixels} px); got {getattr(args, name)}")
    if args.stride > window:
        raise UsageError(f"--stride: must be <= the window ({window} latent px); got {args.stride}")
    latent_width = args.width // scale
    if args.circular and (window % args.stride or latent_width % args.stride):
        raise UsageError(
            f"--stride: with --circular must divide the window ({window}) and the latent width ({latent_width});"
            f" got {args.stride}"
        )


def run(args: argparse.Namespace) -> int:
    """Generate, save the PNG with its parameters, print them as one JSON line."""
    pipe, device, semantic = prepare(args)
    params = parameters(args, pipe.model.window, str(device))
    start = time.perf_counter()
    image = generate(pipe, args, device, semantic)
    save_png(image, args.out, params, args.overwrite)
    print(json.dumps({**params, "out": str(args.out), "seconds": round(time.perf_counter() - start, 2)}))
    return 0


def prepare(args: argparse.Namespace, pipelines: dict | None = None, quiet: bool = False) -> tuple[Any, Any, Any]:
    """Check ``args``, fill in the (demo or real) defaults, load the pipeline and any SDG guidance.

    ``pipelines`` caches loaded pipelines by (model, dtype, device) across calls (batch generation); ``quiet``
    skips the note about the bundled model. Returns ``(pipe, device, semantic_guidance_or_None)``.
    """
    check_arguments(args)
    demo = args.model is None
    if demo:
        args.model = str(_bundled("sd"))
        if not quiet:
            print(
                f"syncguide: using the bundled demo model ({args.model}): a tiny model of procedural landscapes."
                " Pass --model HUB_ID_OR_DIR for a real Stable Diffusion checkpoint.",
                file=sys.stderr,
            )
    if args.perceptual == "auto":
        args.perceptual = "demo-clip" if demo or is_bundled(args.model) else "lpips-vgg"
    if args.sync_weight is None:
        args.sync_weight = DEMO_SYNC_WEIGHT if args.perceptual == "demo-clip" else 20.0
    device = resolve_device(args.device)
    key = (args.model, args.dtype, str(device), args.scheduler)
    cache = {} if pipelines is None else pipelines
    if key not in cache:
        cache[key] = load_pipeline(args.model, DTYPES[args.dtype], device)
        cache[key].set_scheduler(args.scheduler)
    pipe = cache[key]
    fill_sampler_defaults(args, pipe.model.window, pipe.model.vae_scale, demo)
    semantic = None
    if wants_guidance(args):
        args.clip = args.clip or ("demo" if demo or is_bundled(args.model) else None)
        fill_weights(args, *PANORAMA_WEIGHTS)
        clip = load_guidance_clip(args.clip, pipe.model.window * pipe.model.vae_scale, device)
        semantic = build_guidance(args, clip, None, torch.Generator().manual_seed(args.seed), device)
    return pipe, device, semantic


def fill_sampler_defaults(args: argparse.Namespace, window: int, scale: int, demo: bool) -> None:
    """Sizes, stride, steps and batch sizes left out: the demo model's or the paper's; then check the geometry."""
    args.height = args.height or window * scale
    args.width = args.width or (DEMO_WIDTH if demo else 6 * args.height)
    args.stride = args.stride or max(1, window // (2 if demo else 4))
    args.steps = args.steps or (DEMO_STEPS if demo else 50)
    if args.sync_steps is None and demo:
        args.sync_steps = DEMO_SYNC_STEPS
    args.view_batch_size = args.view_batch_size or (DEMO_BATCH if demo else 1)
    args.sync_batch_size = args.sync_batch_size or (DEMO_BATCH if demo else 1)
    check_geometry(args, window, scale)


def generate(pipe: Any, args: argparse.Namespace, device: torch.device, semantic: Any = None) -> Any:
    """Call the pipeline with the command line's settings; returns one PIL image."""
    return pipe(args.prompt, **sampler_arguments(args, device), semantic_guidance=semantic).images[0]


def sampler_arguments(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The pipeline keyword arguments of the sampler options shared by ``panorama`` and ``layout``."""
    sync = args.method == "syncdiffusion"
    return {
        "negative_prompt": args.negative_prompt,
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.steps,
        "guidance_scale": args.cfg,
        "stride": args.stride,
        "view_batch_size": args.view_batch_size,
        "generator": torch.Generator("cpu").manual_seed(args.seed),
        "circular": args.circular,
        "sync_weight": args.sync_weight if sync else 0.0,
        "sync_decay": args.sync_decay,
        "sync_steps": args.sync_steps,
        "sync_every": args.sync_every,
        "sync_batch_size": args.sync_batch_size,
        "sync_checkpointing": args.sync_checkpointing,
        "perceptual_loss": perceptual_loss(args.perceptual, device) if sync else None,
    }


@functools.lru_cache(maxsize=4)
def perceptual_loss(name: str, device: torch.device) -> torch.nn.Module:
    """The sync loss called ``name`` (a :data:`PERCEPTUAL` choice other than auto) on ``device`` (loaded once)."""
    if name == "demo-clip":
        return clip_feature_distance(_bundled("clip"), device)
    return lpips_vgg(device, pretrained_trunk=name == "lpips-vgg")


def _bundled(name: str) -> Path:
    try:
        return bundled(name)
    except FileNotFoundError as error:
        option = "--model" if name == "sd" else "--perceptual"
        raise UsageError(f"{option}: {error}") from None


def parameters(args: argparse.Namespace, window: int, device: str) -> dict[str, Any]:
    """Every setting that determines the image, as stored in the PNG."""
    names = (
        "prompt",
        "negative_prompt",
        "model",
        "height",
        "width",
        "steps",
        "cfg",
        "stride",
        "seed",
        "method",
        "sync_weight",
        "sync_decay",
        "sync_steps",
        "sync_every",
        "sync_batch_size",
        "view_batch_size",
        "sync_checkpointing",
        "perceptual",
        "circular",
        "scheduler",
        "dtype",
    )
    params = {name: getattr(args, name) for name in names}
    if wants_guidance(args):
        params.update(guidance_parameters(args))
    return {**params, "window": window, "device": device, "syncguide": __version__}
