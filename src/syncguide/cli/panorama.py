"""``syncguide panorama``: a MultiDiffusion or SyncDiffusion panorama from a text prompt.

The command line parses into a :class:`~syncguide.settings.PanoramaSettings` once, resolves every resource
(output path, device, perceptual loss, model, SDG's CLIP) before any sampling, then makes one pipeline call.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, SD3Transformer2DModel, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide import __version__, registry
from syncguide.atomic import write_atomic
from syncguide.cli.control_args import (
    ControlJob,
    add_control_options,
    check_control,
    load_control,
)
from syncguide.cli.guidance_args import (
    add_guidance_options,
    build_guidance,
    check_guidance_options,
    fill_weights,
    guidance_parameters,
    load_guidance_clip,
    wants_guidance,
)
from syncguide.cli.io import check_output, check_output_dir, save_png
from syncguide.cli.loading import check_model, load_pipeline, resolve_device
from syncguide.cli.options import seed
from syncguide.cli.recall import add_from_option
from syncguide.errors import SettingError, UsageError
from syncguide.guidance.perceptual import lpips_vgg
from syncguide.hub import HUB_ID, check_hub
from syncguide.metrics.reference_networks import load_lpips
from syncguide.models import families
from syncguide.models.flux import DEFAULT_WINDOW as DEFAULT_FLUX_WINDOW
from syncguide.parallel import Workers, join
from syncguide.pipeline import SyncDiffusionPipeline
from syncguide.schedulers import FLOW_SCHEDULERS, SCHEDULERS, check_steps, make_scheduler
from syncguide.settings import PanoramaSettings, option_name

METHODS = ("syncdiffusion", "multidiffusion")
PERCEPTUAL = ("auto", "lpips-vgg", "demo-clip", "lpips-random")
# Settings the command line does not offer (one image per run; the window is the model's).
NOT_OPTIONS = ("num_images_per_prompt", "window")
# The demo model runs in seconds: fewer steps, a coarser stride, the reference command's 10 synced steps, and
# batching (pays on a CPU, memory is small). The stride default is a fraction of the window (see `_defaults`).
DEMO_DEFAULTS = {"width": 512, "num_inference_steps": 25, "sync_steps": 10, "view_batch_size": 8, "sync_batch_size": 8}
# w0 calibrated for the demo-clip distance (results/coherence_w2.md): 20 turns the demo panoramas uniform.
DEMO_SYNC_WEIGHT = 2.0
# SDG on latent models acts on decoded x0 predictions with a plain CLIP (clean images); weights text, content, style.
# Style 1e4 from the demo sweep (results/sdg_panorama: 3e3 does nothing measurable, 3e4 showed artefacts with an earlier
# demo SD); text, content uncalibrated.
PANORAMA_WEIGHTS = (1e3, 1e4, 1e4)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class PanoramaJob:
    """Everything one panorama needs, resolved: the loaded pipeline, the prompt, the settings, the networks."""

    pipe: SyncDiffusionPipeline
    prompt: str
    settings: PanoramaSettings
    seed: int
    perceptual_loss: torch.nn.Module | None
    semantic_guidance: Any
    parameters: dict[str, Any]
    memory_check: bool = True
    sync_decoder: torch.nn.Module | None = None
    preview: Path | None = None
    preview_every: int = 5
    workers: Workers = dataclasses.field(default_factory=Workers)
    control: ControlJob | None = None

    def call_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the pipeline call other than the prompt or layout."""
        return {
            "settings": self.settings,
            "generator": torch.Generator("cpu").manual_seed(self.seed),
            "perceptual_loss": self.perceptual_loss,
            "semantic_guidance": self.semantic_guidance,
            "memory_check": self.memory_check,
            "sync_decoder": self.sync_decoder,
            "preview": None if self.preview is None or not self.workers.main else self._preview(),
            "preview_every": self.preview_every,
            "parallel": self.workers.size > 1,
            **(self.control.call_arguments() if self.control is not None else {}),
        }

    def _preview(self) -> Any:
        return functools.partial(write_preview, self.preview)


def add_parser(sub: Any) -> None:
    """Register the ``panorama`` subcommand."""
    p = sub.add_parser("panorama", help="generate a wide image", description=__doc__)
    p.add_argument("prompt", nargs="?", help="text prompt (required unless --from gives one)")
    add_sampler_options(p)
    add_from_option(p)
    p.add_argument("--out", type=Path, default=Path("panorama.png"), help="output PNG (default panorama.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def add_sampler_options(p: argparse.ArgumentParser, layout: bool = False) -> None:
    """Register the model, settings, sampler and SDG options (shared with ``layout``; its own settings if
    ``layout``). Every :class:`PanoramaSettings` field is an option; unset options take the model's default."""
    p.add_argument(
        "--model",
        help="diffusers pipeline of SD 1.x/2.x, SDXL, FLUX.1 or SD3 (its family is read from model_index.json): hub id"
        " or local directory (default: the bundled demo model)",
    )
    for item in dataclasses.fields(PanoramaSettings):
        if item.name not in NOT_OPTIONS and (layout or not item.metadata["layout"]):
            _add_setting(p, item)
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 .. 2^64 - 1 (default 0)")
    p.add_argument("--method", choices=METHODS, default="syncdiffusion")
    p.add_argument(
        "--perceptual",
        choices=PERCEPTUAL,
        default="auto",
        help="sync loss: lpips-vgg (needs the VGG16 weights), demo-clip (tiny CLIP features), lpips-random (offline"
        " tests); auto (default) is demo-clip for the bundled demo model and lpips-vgg otherwise",
    )
    p.add_argument(
        "--lpips-weights",
        type=Path,
        help="torchvision VGG16 state dict for the lpips-vgg loss (default: torchvision's cache,"
        " $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth)",
    )
    p.add_argument(
        "--preview",
        type=Path,
        help="directory for live previews: step_NNN.png, the x0 prediction every --preview-every steps (decoded by"
        " --sync-decoder when given: nearly free)",
    )
    p.add_argument("--preview-every", type=int, default=5, help="steps between previews, >= 1 (default 5)")
    p.add_argument(
        "--sync-decoder",
        help="decoder for the sync gradient path only: a diffusers AutoencoderTiny directory or hub id for the model's"
        " latents (madebyollin/taesd for SD 1/2, taesdxl, taesd3, taef1), or demo-tiny-decoder; the final image"
        " still uses the full VAE (default: none; demo-tiny-decoder with --sync-mode fast on the demo model)",
    )
    add_guidance_options(p, "1e3, content 1e4, style 1e4")
    add_control_options(p)
    p.add_argument(
        "--scheduler",
        choices=(*SCHEDULERS, *FLOW_SCHEDULERS),
        help="default ddim (the paper's) for SD and SDXL; flow-euler (their own, the only one) for FLUX.1 and SD3",
    )
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    p.add_argument(
        "--window-parallel",
        action="store_true",
        help="share this image's windows among the processes of `accelerate launch --num_processes N ...` (one device"
        " each; the PNG equals one process's, written by process 0)",
    )
    p.add_argument(
        "--parallel-timeout",
        type=float,
        default=600.0,
        help="with --window-parallel: seconds to wait for another process before ending the run (default 600)",
    )
    p.add_argument(
        "--no-memory-check",
        dest="memory_check",
        action="store_false",
        help="skip the estimate that refuses a run needing clearly more memory than the device has free",
    )


def _add_setting(p: argparse.ArgumentParser, item: dataclasses.Field) -> None:
    """One option for settings field ``item``: its type, help and defaults (real and demo); unset is None."""
    option, help_text = option_name(item.name), item.metadata["help"]
    default = {"stride": "window/4 (demo: window/2)", "sync_weight": f"20 (demo-clip loss: {DEMO_SYNC_WEIGHT})"}.get(
        item.name, item.default
    )
    demo = f"; demo: {DEMO_DEFAULTS[item.name]}" if item.name in DEMO_DEFAULTS else ""
    if isinstance(item.default, bool):
        p.add_argument(option, dest=item.name, action="store_true", default=None, help=help_text)
        return
    kind = str if isinstance(item.default, str) else (float if "float" in str(item.type) else int)
    choices = item.metadata.get("choices")
    p.add_argument(option, dest=item.name, type=kind, choices=choices, help=f"{help_text} (default {default}{demo})")


def run(args: argparse.Namespace) -> int:
    """Generate, save the PNG with its parameters, print them as one JSON line."""
    job = prepare(args)
    start = time.perf_counter()
    image = job.pipe(job.prompt, **job.call_arguments()).images[0]
    report(job, args, image, start)
    return 0


def report(job: PanoramaJob, args: argparse.Namespace, image: Any, start: float) -> None:
    """Save the PNG with its parameters and print them as one JSON line (process 0 only in a parallel run)."""
    if job.workers.main:
        save_png(image, args.out, job.parameters, args.overwrite)
        seconds = round(time.perf_counter() - start, 2)
        print(json.dumps({**job.parameters, "out": str(args.out), "seconds": seconds}, allow_nan=False))


def prepare(
    args: argparse.Namespace, pipelines: dict | None = None, quiet: bool = False, layout: bool = False
) -> PanoramaJob:
    """Check ``args`` and resolve every resource: output path, device, sync loss, pipeline, settings, SDG.

    ``pipelines`` caches loaded pipelines by (model, dtype, device, scheduler) across calls (batch generation);
    ``quiet`` skips the note about the bundled model; ``layout`` adds the layout settings. ``args`` is not changed.
    """
    args = argparse.Namespace(**vars(args))  # the guidance helpers fill weights in: never the caller's namespace
    if args.prompt is None:
        raise UsageError(f"{'--background' if layout else 'PROMPT'}: a prompt is required (or --from FILE.png)")
    given = given_settings(args, layout)
    check_guidance_options(args)
    check_output(args.out, args.overwrite)
    if args.preview is not None:
        check_output_dir(args.preview, "--preview")
    if args.preview_every < 1:
        raise UsageError(f"--preview-every: must be >= 1; got {args.preview_every}")
    workers = window_workers(args)
    device = workers.device if args.window_parallel else resolve_device(args.device)
    model, demo = _model(args.model, quiet or not workers.main)
    perceptual = args.perceptual if args.perceptual != "auto" else ("demo-clip" if demo else "lpips-vgg")
    geometry = model_geometry(model, args.scheduler)
    settings = resolve_settings(given, args.method, geometry, demo, perceptual)
    check_steps(geometry.scheduler, settings.num_inference_steps)
    control_images = check_control(args, model, geometry.family, settings.height, settings.width)
    if args.lpips_weights is not None and perceptual != "lpips-vgg":
        raise UsageError(f"--lpips-weights: only the lpips-vgg sync loss uses it; this run's is {perceptual}")
    loss = perceptual_loss(perceptual, device, args.lpips_weights) if settings.syncs else None
    decoder_name = args.sync_decoder or (DEMO_DECODER if demo and settings.sync_mode == "fast" else None)
    decoder = sync_decoder(decoder_name, device, DTYPES[args.dtype]) if decoder_name and settings.syncs else None
    pipe = _pipeline(model, args, geometry.scheduler_name, device, pipelines)
    pipe, control = _controlled(pipe, args, control_images, device)
    image_size = geometry.window * geometry.scale
    semantic = _semantic_guidance(args, demo, image_size, device) if wants_guidance(args) else None
    params = {
        "prompt": args.prompt,
        "model": model,
        "seed": args.seed,
        "method": args.method,
        **settings.to_parameters(layout),
        "perceptual": perceptual,
        **({"sync_decoder": decoder_name} if decoder is not None else {}),
        "scheduler": geometry.scheduler_name,
        "dtype": args.dtype,
        **(guidance_parameters(args) if semantic is not None else {}),
        **({"control": control.parameters} if control is not None else {}),
        "device": str(device),
        "syncguide": __version__,
    }
    return PanoramaJob(
        pipe,
        args.prompt,
        settings,
        args.seed,
        loss,
        semantic,
        params,
        args.memory_check,
        decoder,
        args.preview,
        args.preview_every,
        workers,
        control,
    )


def _controlled(
    pipe: SyncDiffusionPipeline, args: argparse.Namespace, images: list, device: torch.device
) -> tuple[SyncDiffusionPipeline, ControlJob | None]:
    """``pipe`` with ``--controlnet``'s ControlNets (a new pipeline sharing its modules, so a cached pipeline stays
    as it was) and their job; ``pipe`` and None without one."""
    if not args.controlnets:
        return pipe, None
    control = load_control(args, images, DTYPES[args.dtype], device, pipe.family)
    options = {k: v for k, v in pipe.config.items() if k == "force_zeros_for_empty_prompt"}  # SDXL's
    controlled = type(pipe)(**pipe.components, **options, controlnet=control.nets)
    controlled.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return controlled, control


def window_workers(args: argparse.Namespace) -> Workers:
    """``--window-parallel``: this process's place in the launched run, on its own device (``cuda:LOCAL_RANK``
    under accelerate; the CPU for ``--device cpu`` or without CUDA); one process otherwise."""
    if not (0 < args.parallel_timeout < math.inf):
        raise UsageError(f"--parallel-timeout: must be a positive number of seconds; got {args.parallel_timeout}")
    if not args.window_parallel:
        return Workers()
    if args.device not in ("auto", "cpu"):
        rule = "each process takes its own device (auto or cpu)"
        raise UsageError(f"--device: with --window-parallel {rule}; got {args.device}")
    device = torch.device("cpu") if args.device == "cpu" or not torch.cuda.is_available() else None
    return join(device, args.parallel_timeout)


def _model(spec: str | None, quiet: bool) -> tuple[str, bool]:
    """``(model, is the demo model)``: ``spec`` checked, or the bundled demo model (said on stderr)."""
    if spec is not None:
        check_model(spec)
        return spec, registry.model_name(spec) == "demo"
    model = str(_resolve("model", "demo", "--model"))
    if not quiet:
        print(
            f"syncguide: using the bundled demo model ({model}): a tiny model of procedural landscapes."
            " Pass --model HUB_ID_OR_DIR for a real Stable Diffusion checkpoint.",
            file=sys.stderr,
        )
    return model, True


def _semantic_guidance(args: argparse.Namespace, demo: bool, image_size: int, device: torch.device) -> Any:
    """SDG guidance of the command line (fills ``args``' unset weights and CLIP with the panorama defaults)."""
    args.clip = args.clip or ("demo" if demo else None)
    fill_weights(args, *PANORAMA_WEIGHTS)
    clip = load_guidance_clip(args.clip, image_size, device)
    return build_guidance(args, clip, None, torch.Generator().manual_seed(args.seed), device)


def _pipeline(
    model: str, args: argparse.Namespace, scheduler: str, device: torch.device, cache: dict | None
) -> SyncDiffusionPipeline:
    key = (model, args.dtype, str(device), scheduler)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = load_pipeline(model, DTYPES[args.dtype], device)
        cache[key].set_scheduler(scheduler)
    return cache[key]


def given_settings(args: argparse.Namespace, layout: bool) -> dict[str, Any]:
    """The settings options given on the command line (unset ones left out), checked against their rules."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(PanoramaSettings)
        if f.name not in NOT_OPTIONS and (layout or not f.metadata["layout"]) and getattr(args, f.name) is not None
    }
    _settings(given)
    return given


@dataclass(frozen=True)
class Geometry:
    """What a panorama needs to know of a model before its weights load: its family, window (latent pixels),
    pixels per latent pixel, scheduler (named, with the checkpoint's schedule) and family defaults."""

    family: str
    window: int
    scale: int
    scheduler_name: str
    scheduler: SchedulerMixin
    defaults: families.Defaults


def model_geometry(model: str, scheduler: str | None) -> Geometry:
    """The :class:`Geometry` of a panorama model (any supported family) from its configuration files (no weights
    loaded); ``scheduler`` None is the family's default (ddim for SD/SDXL, flow-euler for FLUX.1/SD3)."""
    try:
        index = DiffusionPipeline.load_config(model)
        family = families.family_of_index(dict(index))
        if family is None:
            raise UsageError(f"--model: {model} is a {index.get('_class_name')}; supported: {families.SUPPORTED}")
        # each model class reads its own config file name (config.json, scheduler_config.json)
        denoiser = (SD3Transformer2DModel if family in families.FLOW else UNet2DConditionModel).load_config(
            model, subfolder="transformer" if family in families.FLOW else "unet"
        )
        vae = AutoencoderKL.load_config(model, subfolder="vae")
        schedule = DDIMScheduler.load_config(model, subfolder="scheduler")
    except UsageError:
        raise
    except Exception as error:  # any failure to read the configuration is bad input, reported in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--model: cannot read the configuration of {model}: {first}") from None
    allowed = FLOW_SCHEDULERS if family in families.FLOW else SCHEDULERS
    name = scheduler or next(iter(allowed))
    if name not in allowed:
        raise UsageError(f"--scheduler: must be one of {', '.join(allowed)} for {families.NAMES[family]}; got {name}")
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    # FLUX's transformer has no sample_size: FluxPipeline's default_sample_size, 128 latent px
    window = DEFAULT_FLUX_WINDOW if family == families.FLUX else int(denoiser["sample_size"])
    defaults = families.defaults_for(family, bool(denoiser.get("guidance_embeds", True)))
    return Geometry(family, window, scale, name, make_scheduler(name, schedule), defaults)


def resolve_settings(
    given: dict[str, Any], method: str, geometry: Geometry, demo: bool, perceptual: str
) -> PanoramaSettings:
    """The ``given`` settings with unset ones filled by the demo model's, the paper's or the family's defaults;
    UsageError naming the option for a value that breaks a rule or does not fit the model's window."""
    window, scale = geometry.window, geometry.scale
    values = {"window": window, **_defaults(geometry, demo, perceptual, given), **given}
    if method == "multidiffusion":
        values["sync_weight"] = 0.0
    settings = _settings(values)
    check_geometry(settings, window, scale)
    return settings


def _settings(values: dict[str, Any]) -> PanoramaSettings:
    """``PanoramaSettings(**values)``; a broken rule is a UsageError naming the option."""
    try:
        return PanoramaSettings(**values)
    except SettingError as error:
        raise UsageError(f"{option_name(error.setting)}: {error.rule}") from None


def _defaults(geometry: Geometry, demo: bool, perceptual: str, given: dict[str, Any]) -> dict[str, Any]:
    """Defaults that depend on the model: sizes from the window, the family's steps, guidance, stride and T5
    length (:data:`syncguide.models.families.DEFAULTS`), the demo model's faster settings."""
    window, family = geometry.window, geometry.defaults
    height = given.get("height") or window * geometry.scale
    defaults = {
        "height": height,
        "width": 6 * height,
        "stride": max(1, window // (2 if demo else family.stride_fraction)),
        "num_inference_steps": family.steps,
        "guidance_scale": family.guidance_scale,
        "max_sequence_length": family.max_sequence_length,
        "sync_weight": DEMO_SYNC_WEIGHT if perceptual == "demo-clip" else family.sync_weight,
        "sync_batch_size": 1,
    }
    return {**defaults, **(DEMO_DEFAULTS if demo else {})}


def check_geometry(settings: PanoramaSettings, window: int, scale: int) -> None:
    """Raise UsageError for sizes and strides that do not fit the model's window (latent pixels of ``scale`` px)."""
    pixels = window * scale
    for name in ("height", "width"):
        value = getattr(settings, name)
        if value <= 0 or value % scale:
            raise UsageError(f"--{name}: must be a positive multiple of {scale}; got {value}")
        if value < pixels:
            raise UsageError(f"--{name}: must be at least one window ({pixels} px); got {value}")
    if settings.stride > window:
        raise UsageError(f"--stride: must be <= the window ({window} latent px); got {settings.stride}")
    latent_width = settings.width // scale
    if settings.circular_padding and (window % settings.stride or latent_width % settings.stride):
        raise UsageError(
            f"--stride: with --circular must divide the window ({window}) and the latent width ({latent_width});"
            f" got {settings.stride}"
        )


@functools.lru_cache(maxsize=4)
def perceptual_loss(name: str, device: torch.device, weights: Path | None = None) -> torch.nn.Module:
    """The sync loss called ``name`` (a :data:`PERCEPTUAL` choice other than auto) on ``device`` (loaded once).

    ``lpips-vgg`` takes its VGG16 trunk from ``weights`` (a torchvision state dict) or torchvision's cache (which
    downloads when online); a trunk that cannot be had is one UsageError saying where it was looked for.
    """
    if name == "demo-clip":
        return _resolve("perceptual", "demo-clip", "--perceptual", device)
    if name == "lpips-random":
        return lpips_vgg(device, pretrained_trunk=False)
    if weights is not None:
        if not weights.expanduser().is_file():
            raise UsageError(f"--lpips-weights: no such file: {weights}")
        return load_lpips(weights, device)
    url, cache = vgg16_weights()
    try:
        if not cache.is_file():  # fetch it ourselves: offline, this fails before anything is printed
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cache), progress=True)
        return lpips_vgg(device)
    except Exception as error:  # offline without the cached trunk: urllib, OSError, ...; say where to put it
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        choices = ", ".join(c for c in PERCEPTUAL if c not in ("auto", "lpips-vgg"))
        raise UsageError(
            f"--perceptual: lpips-vgg needs torchvision's VGG16 weights, not found at {cache} and not"
            f" downloadable ({first}); put the file there, pass --lpips-weights FILE, or choose --perceptual"
            f" from {choices}"
        ) from None


def vgg16_weights() -> tuple[str, Path]:
    """``(url, cache path)`` of the ImageNet VGG16 weights LPIPS-VGG's trunk loads (``$TORCH_HOME/hub/checkpoints``).

    Imported here, not at start-up: only an lpips-vgg run needs torchvision's model registry.
    """
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def write_preview(directory: Path, step: int, images: list) -> None:
    """Write the preview of ``step`` to ``directory/step_NNN.png`` (one file per image: ``step_NNN_K.png``),
    atomically, replacing the previous run's file of that step."""
    directory.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(images):
        name = f"step_{step + 1:03d}.png" if len(images) == 1 else f"step_{step + 1:03d}_{k}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        write_atomic(directory / name, buffer.getvalue(), overwrite=True)


DEMO_DECODER = "demo-tiny-decoder"
"""The demo world's AutoencoderTiny for the demo VAE's latents (fast sync's default on the demo model)."""


def sync_decoder(spec: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The ``--sync-decoder`` ``spec`` loaded: a registered name (``demo-tiny-decoder``), a local directory or a
    hub id of a diffusers ``AutoencoderTiny`` (or ``AutoencoderKL``); UsageError naming the option otherwise."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    if registry.registered("model", spec):
        spec = str(_resolve("model", spec, "--sync-decoder"))
    local = Path(spec).expanduser()
    if local.exists():
        config = local / "config.json"
        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
        except (OSError, ValueError, AttributeError):
            raise UsageError(f"--sync-decoder: {spec} has no readable config.json of a diffusers decoder") from None
        if name not in ("AutoencoderTiny", "AutoencoderKL"):
            raise UsageError(f"--sync-decoder: {spec} is a {name}; expected an AutoencoderTiny (TAESD) directory")
    elif not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise UsageError(f"--sync-decoder: {spec} does not exist (give a local directory or a hub id like org/name)")
    else:
        check_hub(spec, "sync_decoder", "config.json")
    cls = AutoencoderKL if local.exists() and name == "AutoencoderKL" else AutoencoderTiny
    try:
        decoder = cls.from_pretrained(str(local) if local.exists() else spec)
    except Exception as error:  # any loading failure is bad input, in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--sync-decoder: cannot load {spec}: {first}") from None
    return decoder.to(device, dtype).eval().requires_grad_(False)


def _resolve(kind: str, name: str, option: str, *args: Any) -> Any:
    """The registered resource built with ``args``, or UsageError naming ``option`` (e.g. no demo bundle)."""
    try:
        return registry.lookup(kind, name)(*args)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"{option}: {error}") from None
