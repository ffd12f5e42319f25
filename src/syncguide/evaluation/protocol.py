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

import math
import stat
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
from syncguide.evaluation.run import AUTO, EvalSettings, NetworkSettings, evaluate
from syncguide.hub import check_model
from syncguide.metrics.networks import REAL
from syncguide.scaleout import Item, existing_ancestor, process_state, read_manifest, write_manifest
from syncguide.schedulers import check_steps, make_scheduler
from syncguide.settings import MAX_SIDE, SYNC_MODES

DEMO_PROMPTS = ("a photo of mountains", "a landscape by a lake", "a photo of hills with trees")
"""Prompts that leave the demo world's global attributes (time of day, season) open."""
DEMO_MODEL = "demo"
"""The registered model (and metric networks) the protocol uses without a model."""
REFERENCE_SEED = 100_000
"""Seed of a prompt's first reference image (the panoramas use seeds 0 .. seeds - 1)."""
MAX_COUNT = REFERENCE_SEED
"""Most panoramas per prompt and method (their seeds stay below the references'), and most references."""
WEIGHT_FILES = ("lpips_weights", "vgg19_weights", "inception_weights")
"""The real metric networks' weight-file settings (:class:`~syncguide.evaluation.run.NetworkSettings`)."""
TORCH_FORMATS = (b"PK\x03\x04", b"\x80")
"""How a ``torch.save`` file starts: a zip archive (torch >= 1.6) or a pickle (protocol 2 and up)."""
SCHEDULER = "ddim"
"""The scheduler of the items (``syncguide panorama``'s default, the paper's)."""


@dataclass(frozen=True)
class ReproduceSettings:
    """The protocol's settings.

    Attributes:
        out: the run directory (manifest, panoramas, references, eval, strip, README).
        model: a Stable Diffusion hub id or directory (None: the demo model).
        prompts: a prompt file, one per line (None: ``DEMO_PROMPTS``; required with ``model``).
        seeds: panoramas per prompt and method (2 .. ``MAX_COUNT``).
        weights: the sync weights w0, finite, distinct and >= 0 (0 is MultiDiffusion).
        references: reference images per prompt (1 .. ``MAX_COUNT``; None: 2 x ``seeds``).
        width: panorama width in pixels, a multiple of the VAE scale, at least one window (None: 6 windows).
        steps: denoising steps, >= 1 and as many as DDIM can run on the model's schedule (None: the panorama
            command's default).
        perceptual: the sync loss (as ``syncguide panorama --perceptual``).
        sync_mode: SyncDiffusion's gradient, one of ``SYNC_MODES`` (as ``syncguide panorama --sync-mode``):
            ``exact`` or ``fast`` (on the demo model fast decodes the gradient path with ``demo-tiny-decoder``).
            Only the SyncDiffusion items (w0 > 0) get it, and only when fast: the exact items stay those of
            earlier runs, and a fast run's manifest differs from an exact one's, so a rerun in the same
            directory with the other mode is refused (as any other changed setting).
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
    sync_mode: str = "exact"
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

    Every setting, then every item (``check(items)``), is checked before anything is written: a refused run
    leaves no manifest behind, so the corrected command can start in the same directory. Returns the evaluation
    results (main process).
    """
    prompts = check_settings(settings)
    window = check_geometry(settings)
    items = plan(settings, prompts, window)
    check(items)
    state = state or process_state()
    if state.is_main_process:
        settings.out.mkdir(parents=True, exist_ok=True)
        write_manifest(items, settings.out / "manifest.jsonl")
    state.wait_for_everyone()
    items = read_manifest(settings.out / "manifest.jsonl")
    start = time.perf_counter()
    generate(items, settings.out, state)
    results = evaluate(eval_settings(settings), state)
    if state.is_main_process:
        strip(items, settings.out / "panoramas", settings.out / "strip.png", prompts[0], min(settings.seeds, 4))
        seconds = time.perf_counter() - start
        counts = {"seeds": settings.seeds, "n_prompts": len(prompts), "processes": state.num_processes}
        write_readme(settings.out, settings.command_line, results, seconds, sync_mode=settings.sync_mode, **counts)
    return results


def check_settings(settings: ReproduceSettings) -> list[str]:
    """SettingError for bad settings (those that need no model configs; see :func:`check_geometry`); returns the
    prompts."""
    if not 2 <= settings.seeds <= MAX_COUNT:
        rule = f"must be in 2 .. {MAX_COUNT} (intervals and FID need two panoramas); got {settings.seeds}"
        raise SettingError("seeds", rule)
    weights = list(settings.weights)
    if not weights:
        raise SettingError("weights", "must give at least one w0")
    if not all(math.isfinite(w) for w in weights):
        raise SettingError("weights", f"must be finite; got {weights}")
    if any(w < 0 for w in weights) or len(set(weights)) != len(weights):
        raise SettingError("weights", f"must be distinct and >= 0; got {weights}")
    if settings.references is not None and not 1 <= settings.references <= MAX_COUNT:
        raise SettingError("references", f"must be in 1 .. {MAX_COUNT}; got {settings.references}")
    if settings.width is not None and not 1 <= settings.width <= MAX_SIDE:
        raise SettingError("width", f"must be in 1 .. {MAX_SIDE} pixels; got {settings.width}")
    if settings.steps is not None and settings.steps < 1:
        raise SettingError("steps", f"must be >= 1; got {settings.steps}")
    if settings.sync_mode not in SYNC_MODES:
        raise SettingError("sync_mode", f"must be one of {', '.join(SYNC_MODES)}; got {settings.sync_mode!r}")
    if settings.device != "auto":
        resolve_device(settings.device)
    check_networks(settings)
    existing = existing_ancestor(settings.out, "out")
    if existing is not None and not existing.is_dir():
        raise SettingError("out", f"{existing} is not a directory")
    if settings.model is not None and settings.prompts is None:
        raise SettingError("prompts", "required with --model (the default prompts describe the demo world)")
    return read_prompts(settings.prompts) if settings.prompts else list(DEMO_PROMPTS)


def check_networks(settings: ReproduceSettings) -> None:
    """SettingError for metric-network weight files that the run would not use (its networks are not the real
    ones) or that are not torch weight files: before any panorama is generated, not when the evaluation starts."""
    given = [name for name in WEIGHT_FILES if getattr(settings.networks, name) is not None]
    if not given:
        return
    networks = metric_networks(settings)
    if networks != REAL:
        rule = f"is for the real metric networks (--networks real); this run's are {networks!r}"
        raise SettingError(given[0], rule)
    for name in given:
        check_weights_file(Path(getattr(settings.networks, name)).expanduser(), name)


def metric_networks(settings: ReproduceSettings) -> str:
    """The metric networks the evaluation will use: as set, or for ``auto`` those registered under the model's
    name (the demo model's: ``demo``), else the real ones (as :func:`syncguide.evaluation.run.resolve_networks`
    decides from the panoramas)."""
    if settings.networks.name != AUTO:
        return settings.networks.name
    maker = registry.model_name(settings.model or demo_model())
    return maker if maker is not None and registry.registered("metric-networks", maker) else REAL


def check_weights_file(path: Path, setting: str) -> None:
    """SettingError naming ``setting`` unless ``path`` is a readable file in a ``torch.save`` format (zip or
    pickle: its first bytes only are read)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise SettingError(setting, f"{path} is not a file")
        with path.open("rb") as handle:
            head = handle.read(4)
    except FileNotFoundError:
        raise SettingError(setting, f"no such file: {path}") from None
    except OSError as error:
        raise SettingError(setting, f"cannot read {path}: {error.strerror or error}") from None
    if not head.startswith(TORCH_FORMATS):
        raise SettingError(setting, f"{path} is not a torch weights file (torch.save's zip or pickle format)")


def check_geometry(settings: ReproduceSettings) -> int:
    """SettingError for a width or a step count the model cannot run (from its configs only); returns its window
    in pixels."""
    window, scale, schedule = model_configs(settings.model)
    width = settings.width
    if width is not None and (width % scale or width < window):
        rule = f"must be a multiple of {scale} and at least one window ({window} px); got {width}"
        raise SettingError("width", rule)
    if settings.steps is not None:
        try:
            check_steps(make_scheduler(SCHEDULER, schedule), settings.steps)
        except SettingError as error:  # the scheduler's rule, under the protocol's name for it
            raise SettingError("steps", error.rule) from None
    return window


def plan(settings: ReproduceSettings, prompts: list[str], window: int) -> list[Item]:
    """Panorama items for every (prompt, seed, w0) and reference items at window size (``window`` px, one
    window: plain sampling) for every prompt."""
    common = [*(["--model", settings.model] if settings.model else []), "--dtype", settings.dtype]
    common += ["--device", settings.device, "--perceptual", settings.perceptual]
    common += ["--steps", str(settings.steps)] if settings.steps is not None else []
    width = ["--width", str(settings.width or 6 * window)]  # the paper: 6 non-overlapping window-size crops
    n_references = settings.references if settings.references is not None else 2 * settings.seeds
    mode = ["--sync-mode", settings.sync_mode] if settings.sync_mode != "exact" else []  # exact: panorama's default
    items = []
    for p, prompt in enumerate(prompts):
        for w in settings.weights:
            sync = ["--method", "syncdiffusion", "--sync-weight", f"{w:g}", *mode]
            method = ["--method", "multidiffusion"] if w == 0 else sync
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
    return model_configs(model)[0]


def model_configs(model: str | None) -> tuple[int, int, Any]:
    """``(window px, VAE scale, scheduler config)`` of a Stable Diffusion model (None: the demo model), from its
    configs only; SettingError (``model``) if they cannot be read."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    spec = model or str(demo_model())
    check_model(spec)
    try:
        unet = UNet2DConditionModel.load_config(spec, subfolder="unet")
        vae = AutoencoderKL.load_config(spec, subfolder="vae")
        schedule = DDIMScheduler.load_config(spec, subfolder="scheduler")
    except Exception as error:  # unreadable or unreachable configs: one error naming the setting
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SettingError("model", f"cannot read the configs of {spec}: {first}") from None
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    return int(unet["sample_size"]) * scale, scale, schedule


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
