"""ControlNet conditioning images on a panorama canvas: one image fitted to the whole canvas, and each window's
crop of it in latent-aligned pixels (wrapping in 360-degree mode).

The first slice of ControlNet panoramas (issue 17): the geometry every family's ControlNet will use. The model
side (``controlnet=`` on the pipelines, the residuals in each backbone's ``predict``) is not built yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    ratio = (w / h) / (width / height)
    if abs(ratio - 1) > tolerance:
        raise SettingError(
            "control_image",
            f"is {w} x {h} px, aspect ratio {w / h:.3f}, but the canvas is {width} x {height} ({width / height:.3f}):"
            f" they may differ by {tolerance:.0%} at most (crop or pad the control image to the canvas' shape)",
        )
    if (h, w) == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


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
