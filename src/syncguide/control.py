"""ControlNet conditioning images on a panorama canvas: one image fitted to the whole canvas, and each window's
crop of it in latent-aligned pixels (wrapping in 360-degree mode).

ControlNet panoramas (issue 17): the geometry every family's ControlNet uses, and :class:`Control`, the
ControlNet residuals of one call. Stable Diffusion 1.x/2.x takes them so far (SDXL and FLUX.1: not yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from syncguide.errors import SettingError

ASPECT_TOLERANCE = 0.05
"""Largest relative difference between the control image's aspect ratio and the canvas' that is resized without
complaint (a larger one would distort the control image's shapes)."""


def fit_control_image(
    image: torch.Tensor, height: int, width: int, tolerance: float = ASPECT_TOLERANCE
) -> torch.Tensor:
    """The control image ``(B, 3, h, w)`` in [0, 1] resized to the canvas, ``(B, 3, height, width)``.

    Bilinear with antialiasing (no resize when the size is already right: the values are returned unchanged).
    SettingError (``control_image``) when its aspect ratio ``w / h`` differs from ``width / height`` by more than
    ``tolerance`` (relative), or when it is not a 4-d tensor with 3 channels.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise SettingError("control_image", f"must be (B, 3, H, W) RGB; got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    check_aspect(h, w, height, width, tolerance)
    if (h, w) == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def check_aspect(h: int, w: int, height: int, width: int, tolerance: float = ASPECT_TOLERANCE) -> None:
    """SettingError (``control_image``) when an ``h`` x ``w`` image's aspect ratio differs from the ``height`` x
    ``width`` canvas' by more than ``tolerance`` (relative)."""
    if abs((w / h) / (width / height) - 1) > tolerance:
        raise SettingError(
            "control_image",
            f"is {w} x {h} px, aspect ratio {w / h:.3f}, but the canvas is {width} x {height} ({width / height:.3f}):"
            f" they may differ by {tolerance:.0%} at most (crop or pad the control image to the canvas' shape)",
        )


def window_crops(image: torch.Tensor, corners: torch.Tensor, size: int, circular: bool = False) -> torch.Tensor:
    """Every row's crop of the canvas-sized control image: ``(n, 3, size, size)``.

    Args:
        image: ``(B, 3, H, W)`` (:func:`fit_control_image`); row r of the stack belongs to image ``r % B``
            (rows are window-major, B images per window).
        corners: ``(n, 2)`` each row's window (top, left) on the canvas in pixels
            (:meth:`syncguide.sampling.plan.RowPlan.positions`).
        size: the window's side in pixels.
        circular: columns past the right edge wrap to column 0 (360-degree panoramas); otherwise every crop must
            lie inside the image (ValueError).
    """
    b, _, height, width = image.shape
    crops = []
    for r, (top, left) in enumerate(corners.tolist()):
        rows = image[r % b, :, top : top + size]
        if left + size <= width:
            crop = rows[..., left : left + size]
        elif circular:
            crop = rows[..., torch.arange(left, left + size, device=image.device) % width]
        else:
            raise ValueError(f"a window at ({top}, {left}) of side {size} leaves the {width} px wide control image")
        if crop.shape[-2:] != (size, size):
            raise ValueError(f"a window at ({top}, {left}) of side {size} leaves the {height} px high control image")
        crops.append(crop)
    return torch.stack(crops)


CONTROL = "controlnet_cond"
"""Conditioning key prefix of each row's control-image crop (``controlnet_cond_0``, one per ControlNet)."""


@dataclass
class Control:
    """ControlNet conditioning of one call, diffusers' semantics (``StableDiffusionControlNetPipeline``):

    ``net`` a ``ControlNetModel`` or diffusers' ``MultiControlNetModel`` (the residuals of several are summed);
    ``scales`` (``controlnet_conditioning_scale``), ``start`` / ``end`` (``control_guidance_start/end``, fractions
    of the steps) one per ControlNet. The crops themselves travel as conditioning rows (:data:`CONTROL`), so every
    row selection (view batches, sync passes, window parallelism) takes its own. ``step`` / ``total``: where the
    loop is (set by :class:`syncguide.sampling.hooks.ControlHook`).
    """

    net: torch.nn.Module
    scales: list[float]
    start: list[float]
    end: list[float]
    step: int = 0
    total: int = 1

    def step_scales(self) -> list[float]:
        """Each ControlNet's scale at this step: 0 outside its [start, end] fraction of the steps."""
        i, n = self.step, self.total
        ranges = zip(self.scales, self.start, self.end, strict=True)
        return [c * (0.0 if i / n < s or (i + 1) / n > e else 1.0) for c, s, e in ranges]

    def residuals(
        self, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, images: list[torch.Tensor]
    ) -> dict[str, Any]:
        """The UNet's extra keywords (``down_block_additional_residuals``, ``mid_block_additional_residual``) for
        model input ``x`` ``(n, C, h, w)`` with text states ``embeds`` and each ControlNet's crops ``(n, 3, H, W)``."""
        scales = self.step_scales()
        single = len(images) == 1 and not isinstance(self.net, MultiControlNetModel)
        down, mid = self.net(
            x,
            t,
            encoder_hidden_states=embeds,
            controlnet_cond=images[0] if single else images,
            conditioning_scale=scales[0] if single else scales,
            guess_mode=False,
            return_dict=False,
        )
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def as_multi(controlnet: Any) -> torch.nn.Module | None:
    """One ControlNet as given; a list or tuple of several as diffusers' ``MultiControlNetModel``."""
    if isinstance(controlnet, list | tuple):
        return controlnet[0] if len(controlnet) == 1 else MultiControlNetModel(list(controlnet))
    return controlnet


def n_nets(net: torch.nn.Module) -> int:
    """How many ControlNets ``net`` holds."""
    return len(net.nets) if isinstance(net, MultiControlNetModel) else 1


def control_tensor(image: Any, setting: str = "control_image") -> torch.Tensor:
    """A control image (PIL image, ``(H, W, 3)`` array in [0, 1], or ``(B, 3, H, W)`` / ``(3, H, W)`` tensor in
    [0, 1]) as a float ``(B, 3, H, W)`` tensor in [0, 1], converted as diffusers' ControlNet pipelines do (RGB,
    not normalised to [-1, 1])."""
    if isinstance(image, PIL.Image.Image):
        image = VaeImageProcessor.numpy_to_pt(VaeImageProcessor.pil_to_numpy(image.convert("RGB")))
    elif isinstance(image, np.ndarray):
        image = VaeImageProcessor.numpy_to_pt(image[None] if image.ndim == 3 else image)
    if not isinstance(image, torch.Tensor):
        raise SettingError(setting, f"must be a PIL image, an array or a tensor; got {type(image).__name__}")
    image = image[None] if image.dim() == 3 else image
    return image.float()
