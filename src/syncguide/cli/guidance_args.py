"""The semantic-guidance options shared by ``generate`` and ``panorama``: parse, check, build the guidance."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from PIL import UnidentifiedImageError

from syncguide.errors import UsageError
from syncguide.guidance.semantic import ContentGuidance, Guidance, MultiGuidance, StyleGuidance, TextGuidance
from syncguide.images import SIGNED, load_images

RESOLUTION_FACTOR = 4  # a CLIP reads images resized by at most this factor either way


def add_guidance_options(p: argparse.ArgumentParser, defaults: str) -> None:
    """Register ``--clip --text --content --style --text-weight --image-weight --style-weight --guidance-steps``.

    ``defaults`` describes the weights used when the options are left out (they depend on the model).
    """
    p.add_argument("--clip", help="guidance CLIP: demo, demo-noise-aware, a directory, a hub id, open_clip:ARCH/TAG")
    p.add_argument("--text", help="text guidance: steer towards this text")
    p.add_argument("--content", type=Path, help="image-content guidance: a reference image file")
    p.add_argument("--style", type=Path, help="image-style guidance: a reference image file")
    p.add_argument("--text-weight", type=float, help=f"text guidance scale (default {defaults})")
    p.add_argument("--image-weight", type=float, help="content guidance scale (and style's, unless --style-weight)")
    p.add_argument("--style-weight", type=float, help="style guidance scale (default --image-weight)")
    p.add_argument(
        "--guidance-steps",
        default="0,1",
        help="active window as fractions of the run, START,END (default 0,1: every step)",
    )


def check_guidance_options(args: argparse.Namespace) -> None:
    """Raise UsageError for bad guidance input (before anything is loaded); reads the reference images."""
    for option in ("text_weight", "image_weight", "style_weight"):
        value = getattr(args, option)
        if value is not None and not (math.isfinite(value) and value >= 0):
            rule = "must be finite" if not math.isfinite(value) else "must be >= 0"
            raise UsageError(f"--{option.replace('_', '-')}: {rule}; got {value}")
    if args.text is not None and not args.text.strip():
        raise UsageError("--text: must not be empty")
    try:
        start, end = (float(v) for v in args.guidance_steps.split(","))
    except ValueError:
        raise UsageError(f"--guidance-steps: must be START,END fractions; got {args.guidance_steps!r}") from None
    if not 0 <= start < end <= 1:
        raise UsageError(f"--guidance-steps: must satisfy 0 <= START < END <= 1; got {args.guidance_steps}")
    args.guidance_window = (start, end)
    args.references = {k: read_image(getattr(args, k), f"--{k}") for k in ("content", "style") if getattr(args, k)}


def wants_guidance(args: argparse.Namespace) -> bool:
    return bool(args.text or args.content or args.style)


def fill_weights(args: argparse.Namespace, text: float, image: float, style: float) -> None:
    """Default the weights left out: ``text``, ``image`` (content) and ``style``; --image-weight alone sets both
    image weights."""
    if args.style_weight is None:
        args.style_weight = args.image_weight if args.image_weight is not None else style
    args.text_weight = text if args.text_weight is None else args.text_weight
    args.image_weight = image if args.image_weight is None else args.image_weight


def read_image(path: Path, option: str) -> torch.Tensor:
    """An image file as ``(1, 3, H, W)`` in [-1, 1]; UsageError naming ``option`` if it cannot be read."""
    try:
        return load_images([path], value_range=SIGNED)
    except FileNotFoundError:
        raise UsageError(f"{option}: {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise UsageError(f"{option}: cannot read {path} as an image ({type(error).__name__})") from None
    except ValueError as error:  # too many pixels
        raise UsageError(f"{option}: {error}") from None


def check_guidance_clip(spec: str | None) -> None:
    """UsageError / SettingError (``--clip``) unless ``spec`` names a guidance CLIP that can be loaded, checked from
    its files (and the Hugging Face cache, for a hub id) before anything loads."""
    from syncguide.models.guidance_clip import check_clip

    if spec is None:
        raise UsageError("--clip: text, content and style guidance need a CLIP (e.g. --clip demo-noise-aware)")
    check_clip(spec, "clip")


def load_guidance_clip(spec: str | None, image_size: int, device: torch.device) -> Any:
    """Load ``--clip`` (checked first: :func:`check_guidance_clip`) and check that its input resolution fits
    ``image_size`` px images."""
    from syncguide.models.guidance_clip import load_clip

    check_guidance_clip(spec)
    try:
        clip = load_clip(spec, device)
    except (OSError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--clip: cannot load {spec}: {first}") from None
    ratio = image_size / clip.resolution
    if not 1 / RESOLUTION_FACTOR <= ratio <= RESOLUTION_FACTOR:
        raise UsageError(
            f"--clip: its input resolution ({clip.resolution} px) does not fit {image_size} px images"
            f" (must be within {RESOLUTION_FACTOR}x)"
        )
    return clip


def build_guidance(
    args: argparse.Namespace,
    clip: Any,
    alphas_cumprod: torch.Tensor | None,
    generator: torch.Generator,
    device: torch.device,
) -> Guidance:
    """The guidance the options ask for: one object, or a :class:`MultiGuidance` of several."""
    window = args.guidance_window
    parts: list[Guidance] = []
    if args.text:
        parts.append(TextGuidance(weight=args.text_weight, steps=window, encoder=clip, text=args.text))
    for kind, cls, weight in (
        ("content", ContentGuidance, args.image_weight),
        ("style", StyleGuidance, args.style_weight),
    ):
        if kind in args.references:
            reference = args.references[kind].to(device)
            parts.append(
                cls(
                    weight=weight,
                    steps=window,
                    encoder=clip,
                    reference=reference,
                    alphas_cumprod=alphas_cumprod,
                    generator=generator,
                )
            )
    return parts[0] if len(parts) == 1 else MultiGuidance(parts=parts)


def guidance_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The guidance settings stored in each PNG."""
    return {
        "clip": args.clip,
        "text": args.text,
        "content": str(args.content) if args.content else None,
        "style": str(args.style) if args.style else None,
        "text_weight": args.text_weight,
        "image_weight": args.image_weight,
        "style_weight": args.style_weight,
        "guidance_steps": list(args.guidance_window),
    }
