"""The SyncDiffusion paper's evaluation protocol end to end (``syncguide reproduce``).

MultiDiffusion and SyncDiffusion at every weight w0 (0 is MultiDiffusion) over a prompt set and seeds, reference
images from the same model at window size, then the evaluation on them (:mod:`syncguide.evaluation.run`): a
Table-1-style table, the trade-off plot and a strip comparing the methods on the same seeds. Every step is a
resumable manifest (rerun to finish an interrupted run) and splits across ``accelerate launch`` processes.
Without a model it runs in the demo world (the registered ``demo`` model and metric networks).

A manifest item is a ``syncguide panorama`` command line; generating items is the caller's (the command line's
``batch``), passed in as :class:`Generator`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncguide import registry
from syncguide.devices import resolve_device
from syncguide.errors import SettingError
from syncguide.evaluation.inputs import read_prompts
from syncguide.evaluation.protocol_report import strip, write_readme
from syncguide.evaluation.run import EvalSettings, NetworkSettings, evaluate
from syncguide.hub import check_model
from syncguide.scaleout import Item, process_state, read_manifest, write_manifest

DEMO_PROMPTS = ("a photo of mountains", "a landscape by a lake", "a photo of hills with trees")
"""Prompts that leave the demo world's global attributes (time of day, season) open."""
DEMO_MODEL = "demo"
"""The registered model (and metric networks) the protocol uses without a model."""
REFERENCE_SEED = 100_000
"""Seed of a prompt's first reference image (the panoramas use seeds 0 .. seeds - 1)."""


@dataclass(frozen=True)
class ReproduceSettings:
    """The protocol's settings.

    Attributes:
        out: the run directory (manifest, panoramas, references, eval, strip, README).
        model: a Stable Diffusion hub id or directory (None: the demo model).
        prompts: a prompt file, one per line (None: ``DEMO_PROMPTS``; required with ``model``).
        seeds: panoramas per prompt and method (>= 2).
        weights: the sync weights w0, distinct and >= 0 (0 is MultiDiffusion).
        references: reference images per prompt (None: 2 x ``seeds``).
        width: panorama width in pixels (None: 6 windows).
        steps: denoising steps (None: the panorama command's default).
        perceptual: the sync loss (as ``syncguide panorama --perceptual``).
        dtype, device: as ``syncguide panorama --dtype`` / ``--device`` (names, put into the items).
        networks: the metric networks (:class:`~syncguide.evaluation.run.NetworkSettings`).
        command_line: the command that asked for this, recorded in the README.
    """

    out: Path = Path("reproduce")
    model: str | None = None
    prompts: Path | None = None
    seeds: int = 16
    weights: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0)
    references: int | None = None
    width: int | None = None
    steps: int | None = None
    perceptual: str = "auto"
    dtype: str = "float32"
    device: str = "auto"
    networks: NetworkSettings = field(default_factory=NetworkSettings)
    command_line: str = "syncguide reproduce"


Generator = Callable[[list[Item], Path, Any], list[str]]
"""``generate(items, root, state)``: write this process's missing items under ``root``; returns those written."""


def reproduce(
    settings: ReproduceSettings,
    generate: Generator,
    check: Callable[[list[Item]], None] = lambda items: None,
    state: Any = None,
) -> dict[str, Any]:
    """Manifest, generation, evaluation, strip and README; each step skips the work already done.

    ``check(items)`` rejects items before anything is generated. Returns the evaluation results (main process).
    """
    prompts = check_settings(settings)
    items = plan(settings, prompts, window_pixels(settings.model))
    state = state or process_state()
    if state.is_main_process:
        settings.out.mkdir(parents=True, exist_ok=True)
        write_manifest(items, settings.out / "manifest.jsonl")
    state.wait_for_everyone()
    items = read_manifest(settings.out / "manifest.jsonl")
    start = time.perf_counter()
    check(items)
    generate(items, settings.out, state)
    results = evaluate(eval_settings(settings), state)
    if state.is_main_process:
        strip(items, settings.out / "panoramas", settings.out / "strip.png", prompts[0], min(settings.seeds, 4))
        seconds = time.perf_counter() - start
        counts = {"seeds": settings.seeds, "n_prompts": len(prompts), "processes": state.num_processes}
        write_readme(settings.out, settings.command_line, results, seconds, **counts)
    return results


def check_settings(settings: ReproduceSettings) -> list[str]:
    """SettingError for bad settings; returns the prompts."""
    if settings.seeds < 2:
        raise SettingError("seeds", f"must be >= 2 (intervals and FID need two panoramas); got {settings.seeds}")
    weights = list(settings.weights)
    if any(w < 0 for w in weights) or len(set(weights)) != len(weights):
        raise SettingError("weights", f"must be distinct and >= 0; got {weights}")
    if settings.references is not None and settings.references < 1:
        raise SettingError("references", f"must be >= 1; got {settings.references}")
    if settings.device != "auto":
        resolve_device(settings.device)
    if settings.model is not None and settings.prompts is None:
        raise SettingError("prompts", "required with --model (the default prompts describe the demo world)")
    return read_prompts(settings.prompts) if settings.prompts else list(DEMO_PROMPTS)


def plan(settings: ReproduceSettings, prompts: list[str], window: int) -> list[Item]:
    """Panorama items for every (prompt, seed, w0) and reference items at window size (``window`` px, one
    window: plain sampling) for every prompt."""
    common = [*(["--model", settings.model] if settings.model else []), "--dtype", settings.dtype]
    common += ["--device", settings.device, "--perceptual", settings.perceptual]
    common += ["--steps", str(settings.steps)] if settings.steps else []
    width = ["--width", str(settings.width or 6 * window)]  # the paper: 6 non-overlapping window-size crops
    n_references = settings.references if settings.references is not None else 2 * settings.seeds
    items = []
    for p, prompt in enumerate(prompts):
        for w in settings.weights:
            method = (
                ["--method", "multidiffusion"] if w == 0 else ["--method", "syncdiffusion", "--sync-weight", f"{w:g}"]
            )
            items += [
                Item(
                    f"panoramas/{method_file_name(w)}-p{p:02d}-s{seed:04d}.png",
                    "panorama",
                    (prompt, "--seed", str(seed), *method, *width, *common),
                    {"prompt": p, "seed": seed, "weight": w},
                )
                for seed in range(settings.seeds)
            ]
        size = ["--width", str(window), "--height", str(window)]
        for seed in range(REFERENCE_SEED, REFERENCE_SEED + n_references):
            items.append(
                Item(
                    f"references/p{p:02d}-s{seed}.png",
                    "panorama",
                    (prompt, "--seed", str(seed), "--method", "multidiffusion", *size, *common),
                    {"prompt": p, "seed": seed, "reference": True},
                )
            )
    return items


def method_file_name(weight: float) -> str:
    """The file-name stem of a method: ``multidiffusion`` for w0 = 0, else ``sync<w0>``."""
    return "multidiffusion" if weight == 0 else f"sync{weight:g}"


def window_pixels(model: str | None) -> int:
    """The window (training resolution) in pixels of a Stable Diffusion model (None: the demo model), from its
    configs only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = model or str(demo_model())
    check_model(spec)
    try:
        unet = UNet2DConditionModel.load_config(spec, subfolder="unet")
        vae = AutoencoderKL.load_config(spec, subfolder="vae")
    except Exception as error:  # unreadable or unreachable configs: one error naming the setting
        raise SettingError("model", f"cannot read the configs of {spec}: {str(error).splitlines()[0]}") from None
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def demo_model() -> Path:
    """The registered demo model's directory; SettingError (``model``) if no plug-in provides it."""
    try:
        return Path(registry.lookup("model", DEMO_MODEL)())
    except (ValueError, FileNotFoundError) as error:
        raise SettingError("model", f"none given and {error}") from None


def eval_settings(settings: ReproduceSettings) -> EvalSettings:
    """The evaluation of the generated panoramas against the references, report under ``OUT/eval``."""
    return EvalSettings(
        panorama_dir=settings.out / "panoramas",
        reference=settings.out / "references",
        out=settings.out / "eval",
        networks=settings.networks,
        device=None if settings.device == "auto" else resolve_device(settings.device),
        command_line=settings.command_line,
    )
