"""Image files as tensors: the one loader, with the value range stated by every caller.

Metrics read images in [0, 1] (:data:`UNIT`); diffusion models and CLIP guidance read them in [-1, 1]
(:data:`SIGNED`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "SIGNED", "UNIT", "image_files", "load_images", "open_image", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
UNIT = (0.0, 1.0)
SIGNED = (-1.0, 1.0)
MAX_PIXELS = 50_000_000
"""Largest image read (width x height), checked from the header before decoding (decompression bombs)."""


def load_images(
    paths: Sequence[str | Path], *, value_range: tuple[float, float] = UNIT, resolution: int | None = None
) -> torch.Tensor:
    """RGB image files as float32 ``(N, 3, H, W)`` with 8-bit values mapped linearly onto ``value_range``.

    ``value_range`` is ``(low, high)``: :data:`UNIT` (the default: 0 -> 0, 255 -> 1) or :data:`SIGNED` (0 -> -1,
    255 -> 1).
    ``resolution`` R: each image is resized (shorter side to R) and centre-cropped to ``R x R``; None keeps the
    files' size, which must then be the same for all (ValueError naming both sizes otherwise). PIL's errors
    (``FileNotFoundError``, ``UnidentifiedImageError``) pass through.
    """
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low; got {value_range}")
    arrays = [_read(Path(p), resolution) for p in paths]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images must all have one size (height, width) without a resolution; got {sorted(sizes)}")
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return pixels / (255.0 / (high - low)) + low


def image_files(directory: str | Path) -> list[Path]:
    """Every image file (:data:`IMAGE_SUFFIXES`, any case) in ``directory`` and its subdirectories, sorted."""
    return sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def open_image(path: str | Path, mode: str) -> Image.Image:
    """The image file ``path`` decoded in PIL ``mode`` ("RGB", "L").

    ValueError if it has more than :data:`MAX_PIXELS` pixels (read from the header, before decoding); PIL's errors
    for a missing, unreadable or truncated file (``FileNotFoundError``, ``UnidentifiedImageError``, ``OSError``)
    pass through.
    """
    try:
        with Image.open(path) as file:
            if file.width * file.height > MAX_PIXELS:
                raise ValueError(
                    f"{path} has {file.width} x {file.height} pixels, more than the {MAX_PIXELS:,} allowed"
                )
            return file.convert(mode)
    except Image.DecompressionBombError:
        raise ValueError(f"{path} has more than the {MAX_PIXELS:,} pixels allowed") from None


def read_image(path: str | Path, mode: str) -> Image.Image:
    """:func:`open_image`, with every failure a one-line ValueError naming ``path``: missing, not an image,
    truncated or corrupt, more than :data:`MAX_PIXELS` pixels."""
    try:
        return open_image(path, mode)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not an image file") from None
    except ValueError:
        raise
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError too
        unknown = isinstance(error, UnidentifiedImageError)
        raise ValueError(f"{path} {'is not an image PIL can read' if unknown else 'is truncated or corrupt'}") from None


def _read(path: Path, resolution: int | None) -> np.ndarray:
    """``(H, W, 3)`` float32 pixel values in [0, 255], resized and centre-cropped to ``resolution`` if given."""
    image = open_image(path, "RGB")
    if resolution is not None:
        image = _centre_square(image, resolution)
    return np.asarray(image, dtype=np.float32)


def _centre_square(image: Image.Image, resolution: int) -> Image.Image:
    """``image`` resized so that its shorter side is ``resolution``, then its centre ``resolution`` square."""
    scale = resolution / min(image.size)
    image = image.resize((max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale))))
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))
