"""``syncguide generate``: samples of an unconditional diffusion model steered by semantic guidance (SDG)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from syncguide import __version__, registry
from syncguide.cli.guidance_args import (
    add_guidance_options,
    build_guidance,
    check_guidance_clip,
    check_guidance_options,
    fill_weights,
    guidance_parameters,
    load_guidance_clip,
    wants_guidance,
)
from syncguide.cli.io import check_output_dir, save_png
from syncguide.cli.loading import UNCONDITIONAL_NEEDS, check_model, load_model, resolve_device
from syncguide.cli.options import check_ranges, seed
from syncguide.cli.recall import add_from_option
from syncguide.errors import UsageError
from syncguide.images import IMAGE_SUFFIXES
from syncguide.modelkind import UNCONDITIONAL

SCHEDULERS = ("ddpm", "ddim")
# The paper's scales (ADM models, 100 DDPM steps): text 160, image 100.
PAPER_WEIGHTS = (160.0, 100.0, 100.0)
# Calibrated for the demo DDPM with the noise-aware demo CLIP (results/sdg.md): text 300, content 3000, style 3e4.
DEMO_WEIGHTS = (300.0, 3000.0, 30000.0)
DEMO_CLIP = "demo-noise-aware"
MAX_N = 10_000
"""Most samples one run makes (--n)."""
MAX_BATCH_SIZE = 256
"""Most samples sampled at once (--batch-size): the batch is one tensor on the device."""


def add_parser(sub: Any) -> None:
    """Register the ``generate`` subcommand."""
    p = sub.add_parser("generate", help="guided samples of an unconditional model", description=__doc__)
    p.add_argument("--model", help="diffusers UNet2DModel pipeline: hub id or directory (default: the demo DDPM)")
    add_guidance_options(p, "160, image 100, as the paper; demo model: text 300, content 3000, style 3e4")
    p.add_argument("--n", type=int, default=8, help=f"number of samples, 1 .. {MAX_N:,} (default 8)")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first sample (default 0): --start 5 --n 1 remakes sample-SEED-005.png alone",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help=f"samples per batch, 1 .. {MAX_BATCH_SIZE} (default 8); the samples do not depend on it",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help="random seed, 0 .. 2^64 - 1 (default 0); sample (seed, index) has its own"
    )
    p.add_argument(
        "--steps", type=int, default=100, help="sampling steps, at most the model's training steps (default 100)"
    )
    p.add_argument("--scheduler", choices=SCHEDULERS, default="ddpm", help="ddpm (mean shift, default) or ddim")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta, finite and >= 0 (default 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("samples"), help="output directory (default samples/)")
    p.add_argument("--overwrite", action="store_true", help="replace existing sample files")
    add_from_option(p)
    p.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError for input that is wrong whatever the model (before anything loads)."""
    check_ranges(
        args,
        (
            ("n", 1, MAX_N),
            ("batch_size", 1, MAX_BATCH_SIZE),
            ("steps", 1, None),
            ("start", 0, None),
        ),
    )
    if not (math.isfinite(args.eta) and args.eta >= 0):
        raise UsageError(f"--eta: must be finite and >= 0; got {args.eta}")
    check_guidance_options(args)
    check_output_dir(args.out)
    if args.out.suffix.lower() in IMAGE_SUFFIXES and not args.out.is_dir():
        raise UsageError(f"--out: is the directory for the samples (sample-SEED-INDEX.png); got a file name {args.out}")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out: directory {args.out.parent} does not exist")
    clash = [p for p in output_paths(args) if p.exists()]
    if clash and not args.overwrite:
        raise UsageError(f"--out: {clash[0]} exists; pass --overwrite to replace samples")


def sample_path(args: argparse.Namespace, index: int) -> Path:
    """Where sample ``index`` of ``args``'s run goes: ``OUT/sample-SEED-INDEX.png``."""
    return args.out / f"sample-{args.seed}-{index:03d}.png"


def output_paths(args: argparse.Namespace) -> list[Path]:
    return [sample_path(args, i) for i in range(args.start, args.start + args.n)]


@dataclass
class GenerateJob:
    """One ``generate`` run, resolved: the loaded pipeline, the guidance, what each PNG stores, where they go."""

    pipe: Any
    guidance: Any
    parameters: dict[str, Any]
    args: argparse.Namespace

    def batches(self) -> list[range]:
        """The sample indices of each batch, in order."""
        args = self.args
        ends = range(args.start, args.start + args.n, args.batch_size)
        return [range(first, min(first + args.batch_size, args.start + args.n)) for first in ends]

    def sample(self, indices: range, callback: Callable[..., dict] | None = None) -> list[Any]:
        """The PIL samples ``indices``; ``callback`` is the pipeline's ``callback_on_step_end``."""
        from syncguide.sdg_pipeline import sample_generators

        # DDIM: recompute eps from the clipped x0, as guided-diffusion's ddim_sample does after condition_score.
        return self.pipe(
            len(indices),
            generator=sample_generators(self.args.seed, indices),
            num_inference_steps=self.args.steps,
            semantic_guidance=self.guidance,
            eta=self.args.eta,
            use_clipped_model_output=True,
            callback_on_step_end=callback,
        ).images

    def save(self, indices: range, images: list[Any]) -> list[Path]:
        """Write samples ``indices`` (atomically, each with its parameters); their paths."""
        self.args.out.mkdir(exist_ok=True)
        paths = [sample_path(self.args, i) for i in indices]
        for index, image, path in zip(indices, images, paths, strict=True):
            save_png(image, path, {**self.parameters, "index": index}, self.args.overwrite)
        return paths


def run(args: argparse.Namespace) -> int:
    """Sample, save every PNG with its parameters, print them as one JSON line."""
    job = prepare(args)
    start = time.perf_counter()
    for indices in job.batches():
        job.save(indices, job.sample(indices))
    print(
        json.dumps(
            {**job.parameters, "out": str(args.out), "seconds": round(time.perf_counter() - start, 2)}, allow_nan=False
        )
    )
    return 0


def prepare(args: argparse.Namespace, pipelines: dict | None = None, quiet: bool = False) -> GenerateJob:
    """Check ``args`` and load what the run needs (``args`` is not changed).

    Everything is checked before the model loads: the options, the model's kind (from its files), the CLIP, the
    number of steps against the model's scheduler. Sample ``index`` is drawn from its own generator
    (:func:`syncguide.sdg_pipeline.sample_generators` of ``(seed, index)``): it is the same for any batch size.
    ``pipelines`` caches loaded models and CLIPs across calls (the web app); ``quiet`` skips the demo note.
    """
    from syncguide.schedulers import check_steps

    args = argparse.Namespace(**vars(args))
    check_arguments(args)
    demo = args.model is None
    if demo:
        args.model = str(registry.lookup("model", "demo-ddpm")())
        args.clip = args.clip or DEMO_CLIP
        if not quiet:
            note = f"syncguide: using the bundled demo DDPM ({args.model}); pass --model for a real one."
            print(note, file=sys.stderr)
    check_model(args.model, "model", (UNCONDITIONAL,), UNCONDITIONAL_NEEDS)
    if wants_guidance(args):
        check_guidance_clip(args.clip)
    check_schedule(args.model, args.scheduler, args.steps)
    fill_weights(args, *(DEMO_WEIGHTS if demo else PAPER_WEIGHTS))
    device = resolve_device(args.device)
    cache = {} if pipelines is None else pipelines
    key = ("generate", args.model, args.scheduler, str(device))
    if key not in cache:
        cache[key] = load_unconditional(args.model, args.scheduler, device)
    pipe = cache[key]
    check_steps(pipe.scheduler, args.steps)  # a hub model's scheduler is known only now
    guidance = None
    if wants_guidance(args):
        clip_key = ("clip", args.clip, pipe.unet.config.sample_size, str(device))
        if clip_key not in cache:
            cache[clip_key] = load_guidance_clip(args.clip, pipe.unet.config.sample_size, device)
        generator = torch.Generator().manual_seed(args.seed)
        guidance = build_guidance(args, cache[clip_key], pipe.alphas_cumprod, generator, device)
    return GenerateJob(pipe, guidance, parameters(args, str(device)), args)


def scheduler_class(scheduler: str) -> type:
    from diffusers import DDIMScheduler, DDPMScheduler

    return DDPMScheduler if scheduler == "ddpm" else DDIMScheduler


def check_schedule(spec: str, scheduler: str, steps: int) -> None:
    """``--steps`` against the scheduler of a local model directory, from its config (before the weights load); a
    hub model's is checked once loaded. SettingError ``num_inference_steps`` (``--steps``)."""
    from syncguide.schedulers import check_steps

    local = Path(spec).expanduser()
    if not local.is_dir():
        return
    cls = scheduler_class(scheduler)
    try:
        config = cls.load_config(str(local), subfolder="scheduler")
        trial = cls.from_config(config)
    except Exception as error:  # an unreadable scheduler config is bad input to report in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--model: cannot read the scheduler config of {spec}: {first}") from None
    check_steps(trial, steps)


def load_unconditional(spec: str, scheduler: str, device: torch.device) -> Any:
    """The model as a :class:`SemanticGuidancePipeline` with the chosen scheduler (same noise schedule)."""
    from syncguide.sdg_pipeline import SemanticGuidancePipeline

    pipe = load_model(
        SemanticGuidancePipeline, spec, "an unconditional diffusion model", (UNCONDITIONAL,), UNCONDITIONAL_NEEDS
    )
    pipe.scheduler = scheduler_class(scheduler).from_config(pipe.scheduler.config)
    return pipe.to(device)


def parameters(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Every setting that determines the samples, as stored in each PNG."""
    names = ("model", "seed", "steps", "scheduler", "eta", "n", "start", "batch_size")
    return {
        **{k: getattr(args, k) for k in names},
        **guidance_parameters(args),
        "device": device,
        "syncguide": __version__,
    }
