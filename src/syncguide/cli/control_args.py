"""``--controlnet ID_OR_DIR --control-image FILE [--control-scale S]`` (repeatable): ControlNet panoramas and
layouts from the command line, checked before anything loads (counts, files, the canvas' aspect ratio, the
ControlNet's family against the model's)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import torch

from syncguide.control import CONTROL_FAMILIES, WIDTH_KEYS, check_aspect
from syncguide.errors import UsageError
from syncguide.hub import check_hub
from syncguide.images import read_image
from syncguide.models import families

DENOISERS = {families.FLUX: "transformer"}
"""The folder of each family's denoiser whose config a ControlNet must match (default ``unet``)."""

CONTROL_OPTIONS = ("--controlnet", "--control-image", "--control-scale")
"""The options of one ControlNet; given on the command line, they replace a ``--from`` file's."""


def add_control_options(p: argparse.ArgumentParser) -> None:
    """Register the ControlNet options (each repeatable, in the same order)."""
    p.add_argument(
        "--controlnet",
        dest="controlnets",
        action="append",
        default=[],
        help="a diffusers ControlNet (hub id or directory) for the model's family: a ControlNetModel for SD 1.x/2.x"
        " or SDXL, a FluxControlNetModel (InstantX- or XLabs-style) for FLUX.1; repeatable, one --control-image each",
    )
    p.add_argument(
        "--control-image",
        dest="control_images",
        type=Path,
        action="append",
        default=[],
        help="the control image of the whole canvas (e.g. Canny edges), one per --controlnet; resized to the canvas"
        " (aspect ratio within 5%%)",
    )
    p.add_argument(
        "--control-scale",
        dest="control_scales",
        type=float,
        action="append",
        default=[],
        help="controlnet_conditioning_scale of each --controlnet (default 1.0 each)",
    )


@dataclass
class ControlJob:
    """The loaded ControlNets, their control images and scales, and how the PNG records them."""

    nets: list[torch.nn.Module]
    images: list[PIL.Image.Image]
    scales: list[float]
    parameters: list[dict[str, Any]]

    def call_arguments(self) -> dict[str, Any]:
        """The pipeline call's ControlNet keywords (diffusers' names)."""
        single = len(self.nets) == 1
        return {
            "control_image": self.images[0] if single else self.images,
            "controlnet_conditioning_scale": self.scales[0] if single else self.scales,
        }


def check_control(args: argparse.Namespace, model: str, family: str, height: int, width: int) -> list[PIL.Image.Image]:
    """UsageError naming the option unless every ``--controlnet`` has one readable ``--control-image`` of the
    canvas' aspect ratio and at most one finite ``--control-scale``, and names a ControlNet of ``family`` made for
    ``model``'s UNet (its text encoder's width and latent channels), read from the config.json files (locally or
    in the hub cache) before anything loads. Returns the control images."""
    nets, images, scales = args.controlnets, args.control_images, args.control_scales
    if len(images) != len(nets):
        raise UsageError(f"--control-image: give one per --controlnet (got {len(images)} for {len(nets)})")
    if scales and len(scales) != len(nets):
        raise UsageError(f"--control-scale: give one per --controlnet, or none (got {len(scales)} for {len(nets)})")
    for scale in scales:
        if not math.isfinite(scale):
            raise UsageError(f"--control-scale: must be a finite number; got {scale}")
    if nets and family not in CONTROL_FAMILIES:
        raise UsageError(f"--controlnet: not supported for {families.NAMES[family]} yet (SD 1.x/2.x, SDXL, FLUX.1)")
    read = []
    for path in images:
        try:
            image = read_image(path, "RGB")
        except ValueError as error:
            raise UsageError(f"--control-image: {error}") from None
        check_aspect(image.height, image.width, height, width)
        read.append(image)
    part = f"{DENOISERS.get(family, 'unet')}/config.json"
    denoiser = _config(Path(model) / part if Path(model).is_dir() else check_hub(model, "model", part))
    for spec in nets:
        check_family(spec, family, denoiser)
    return read


def _config(path: Path | None) -> dict[str, Any] | None:
    """A config.json's values; None where there is no file (not cached but downloadable) or it is unreadable."""
    try:
        return None if path is None else json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_family(spec: str, family: str, denoiser: dict[str, Any] | None = None) -> None:
    """UsageError (``--controlnet``) unless ``spec``'s config.json is a ControlNet of ``family`` (not a union one
    for FLUX.1) whose widths are those of the ``denoiser`` config (the UNet's or transformer's, when known)."""
    local = Path(spec)
    config = local / "config.json" if local.is_dir() else check_hub(spec, "controlnet", "config.json")
    if config is None:
        return  # not cached but downloadable: loading checks it
    values = _config(config)
    if values is None:
        raise UsageError(f"--controlnet: {spec} has no readable config.json of a diffusers ControlNet")
    name = values.get("_class_name")
    kind = {"FluxControlNetModel": families.FLUX, "SD3ControlNetModel": families.SD3}.get(name)
    if name == "ControlNetModel":
        kind = families.SDXL if values.get("addition_embed_type") == "text_time" else families.SD
    if kind is None:
        raise UsageError(f"--controlnet: {spec} is a {name or 'model without _class_name'}, not a diffusers ControlNet")
    if kind != family:
        raise UsageError(
            f"--controlnet: {spec} is a ControlNet for {families.NAMES[kind]}, the model is {families.NAMES[family]}"
        )
    if kind == families.FLUX and values.get("num_mode"):
        raise UsageError(f"--controlnet: {spec} is a union FLUX ControlNet: not supported yet (InstantX, XLabs are)")
    for key in WIDTH_KEYS[kind] if denoiser else ():
        if values.get(key) != denoiser.get(key):
            raise UsageError(
                f"--controlnet: {spec} has {key} {values.get(key)}, the model's"
                f" {'transformer' if kind == families.FLUX else 'UNet'} {denoiser.get(key)}"
                f" (a ControlNet of another {families.NAMES[kind]} model)"
            )


def load_control(
    args: argparse.Namespace, images: list[PIL.Image.Image], dtype: torch.dtype, device: Any, family: str
) -> ControlJob:
    """The ControlNets of ``args`` (``family``'s class) loaded (safetensors) on ``device``, with their images and
    scales."""
    import diffusers  # deferred: a run without ControlNet never loads a ControlNet class

    kind = diffusers.FluxControlNetModel if family == families.FLUX else diffusers.ControlNetModel
    nets = [kind.from_pretrained(spec, torch_dtype=dtype).to(device).eval() for spec in args.controlnets]
    scales = list(args.control_scales) or [1.0] * len(nets)
    parameters = [
        {"controlnet": spec, "image": str(path), "scale": scale}
        for spec, path, scale in zip(args.controlnets, args.control_images, scales, strict=True)
    ]
    return ControlJob(nets, images, scales, parameters)
