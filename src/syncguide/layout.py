"""Layouts for region-based generation: a background prompt plus (prompt, mask) regions.

A region's mask is either an image of any size (resized to the latent grid and binarised) or a box given as
fractions of the canvas. :meth:`Layout.masks` turns a layout into the fusion weights of MultiDiffusion's region
mode: one binary latent-size mask per foreground prompt, the background taking the rest.

References:
    Bar-Tal et al., "MultiDiffusion: Fusing Diffusion Paths for Controlled Image Generation", ICML 2023
    (Sec. 4.2, region-based text-to-image; the reference code's ``region_based.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from syncguide.images import open_image

Box = tuple[float, float, float, float]


def load_mask(path: str | Path) -> torch.Tensor:
    """A mask image file as a float ``(H, W)`` tensor in [0, 1] (its luminance; white = inside).

    Raises ValueError (one line, naming the file) if the file cannot be read as an image.
    """
    try:
        gray = np.asarray(open_image(path, "L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ValueError(f"mask image {path} does not exist") from None
    except ValueError as error:
        raise ValueError(f"mask image {error}") from None
    except OSError as error:
        raise ValueError(f"cannot read mask image {path}: {type(error).__name__}") from None
    return torch.from_numpy(gray)


def resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A ``(H, W)`` mask in [0, 1] of any size resized to ``(height, width)`` latent pixels and binarised.

    Each latent pixel averages the mask over its footprint (area resampling; bilinear when enlarging) and is
    inside where that average is >= 0.5. Returns a bool tensor ``(height, width)``.
    """
    grid = mask.float()[None, None]
    shrink = grid.shape[-2] >= height and grid.shape[-1] >= width
    mode = "area" if shrink else "bilinear"
    resized = F.interpolate(grid, size=(height, width), mode=mode, **({} if shrink else {"align_corners": False}))
    return resized[0, 0] >= 0.5


def box_mask(box: Box, height: int, width: int) -> torch.Tensor:
    """A bool ``(height, width)`` mask of ``box = (x0, y0, x1, y1)`` in fractions of the canvas.

    Edges are rounded to the nearest latent pixel; the box is ``[round(y0 h), round(y1 h)) x [round(x0 w),
    round(x1 w))``.
    """
    x0, y0, x1, y1 = box
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)] = True
    return mask


def check_box(box: Box) -> None:
    """Raise ValueError unless ``box = (x0, y0, x1, y1)`` lies inside the canvas ``[0, 1]^2`` with x0 < x1, y0 < y1."""
    if len(box) != 4:
        raise ValueError(f"a box has 4 numbers x0,y0,x1,y1; got {len(box)}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"box {tuple(box)} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (inside the canvas)")


@dataclass(frozen=True)
class Region:
    """A foreground prompt and where it applies: ``mask`` (a ``(H, W)`` tensor in [0, 1], any size) or ``box``.

    Build from files with :meth:`from_file`. Exactly one of ``mask`` and ``box`` is set.
    """

    prompt: str
    mask: torch.Tensor | None = field(default=None, repr=False)
    box: Box | None = None

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.box is None):
            raise ValueError("a region needs exactly one of mask and box")
        if self.box is not None:
            check_box(self.box)
        elif self.mask.dim() != 2:
            raise ValueError(f"a region mask must be 2-D (H, W); got shape {tuple(self.mask.shape)}")

    @classmethod
    def from_file(cls, prompt: str, path: str | Path) -> Region:
        """A region whose mask is the image file ``path`` (white = inside)."""
        return cls(prompt, mask=load_mask(path))

    def latent_mask(self, height: int, width: int) -> torch.Tensor:
        """The region on a ``height`` x ``width`` latent canvas: bool ``(height, width)``."""
        if self.box is not None:
            return box_mask(self.box, height, width)
        return resize_mask(self.mask, height, width)


@dataclass(frozen=True)
class Layout:
    """A background prompt and any number of foreground regions (which may overlap each other)."""

    background: str
    regions: tuple[Region, ...] = ()

    @property
    def prompts(self) -> list[str]:
        """``[background, region 1, ...]``: the prompt of each mask of :meth:`masks`."""
        return [self.background, *(region.prompt for region in self.regions)]

    def masks(self, height: int, width: int) -> torch.Tensor:
        """Binary fusion masks ``(1 + K, height, width)`` (float 0/1) on the latent canvas.

        Row 0 is the background: 1 where no region is. Rows 1..K are the regions. Raises ValueError naming the
        region if its mask covers no latent pixel.
        """
        regions = []
        for k, region in enumerate(self.regions, start=1):
            mask = region.latent_mask(height, width)
            if not mask.any():
                raise ValueError(
                    f"region {k} ({region.prompt!r}) covers no latent pixel of the {height} x {width} latent canvas"
                )
            regions.append(mask)
        foreground = torch.stack(regions).any(0) if regions else torch.zeros(height, width, dtype=torch.bool)
        return torch.stack([~foreground, *regions]).float()
