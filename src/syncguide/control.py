"""ControlNet conditioning images on a panorama canvas: one image fitted to the whole canvas, and each window's
crop of it in latent-aligned pixels (wrapping in 360-degree mode).

ControlNet panoramas (issue 17): the geometry every family's ControlNet uses; :class:`Control`, the UNet
ControlNet residuals of one call (Stable Diffusion 1.x/2.x and SDXL: ``ControlNetModel``); :class:`FluxControl`,
FLUX.1's (``FluxControlNetModel``: InstantX-style, the control crop VAE-encoded and packed as the latents are,
or XLabs-style, the crop in pixels through the ControlNet's own hint block);
:func:`check_controlnet`, which ControlNet fits which family. SD3 ControlNets are not supported yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, FluxControlNetModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.controlnets.controlnet_flux import FluxMultiControlNetModel
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from syncguide.errors import SettingError
from syncguide.models import families

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


CONTROL_FAMILIES = (families.SD, families.SDXL, families.FLUX)
"""The families whose ControlNets are supported."""

_UNET_WIDTHS = ("cross_attention_dim", "in_channels")
WIDTH_KEYS = {
    families.SD: _UNET_WIDTHS,
    families.SDXL: _UNET_WIDTHS,
    families.FLUX: ("in_channels", "joint_attention_dim", "pooled_projection_dim"),
}
"""The config keys in which a family's ControlNet must equal its denoiser (UNet or transformer)."""

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
    guess_mode: bool = False

    def step_scales(self) -> list[float]:
        """Each ControlNet's scale at this step: 0 outside its [start, end] fraction of the steps."""
        i, n = self.step, self.total
        ranges = zip(self.scales, self.start, self.end, strict=True)
        return [c * (0.0 if i / n < s or (i + 1) / n > e else 1.0) for c, s, e in ranges]

    def residuals(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        images: list[torch.Tensor],
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cfg: bool = False,
    ) -> dict[str, Any]:
        """The UNet's extra keywords (``down_block_additional_residuals``, ``mid_block_additional_residual``) for
        model input ``x`` ``(n, C, h, w)`` with text states ``embeds`` and each ControlNet's crops ``(n, 3, H, W)``;
        ``added_cond_kwargs``: SDXL's pooled text and micro-conditioning, as the UNet gets them. ``cfg``: the rows
        are CFG's negative half then the prompt's; in guess mode the ControlNet reads the prompt's half only and
        the negative half gets zero residuals (diffusers' ``guess_mode``)."""
        if self.guess_mode and cfg:
            half = x.shape[0] // 2
            added = None if added_cond_kwargs is None else {k: v[half:] for k, v in added_cond_kwargs.items()}
            out = self.residuals(x[half:], t, embeds[half:], [image[half:] for image in images], added)
            return {k: _zeros_before(v) for k, v in out.items()}
        scales = self.step_scales()
        single = len(images) == 1 and not isinstance(self.net, MultiControlNetModel)
        extra = {} if added_cond_kwargs is None else {"added_cond_kwargs": added_cond_kwargs}
        down, mid = self.net(
            x,
            t,
            encoder_hidden_states=embeds,
            controlnet_cond=images[0] if single else images,
            conditioning_scale=scales[0] if single else scales,
            guess_mode=self.guess_mode,
            return_dict=False,
            **extra,
        )
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def _zeros_before(value: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Residuals of the prompt's rows with zero rows before them (CFG's negative half), one tensor or several."""
    if isinstance(value, torch.Tensor):
        return torch.cat([torch.zeros_like(value), value])
    return tuple(torch.cat([torch.zeros_like(v), v]) for v in value)


@dataclass
class FluxControl(Control):
    """FLUX.1 ControlNet conditioning of one call, diffusers' semantics (``FluxControlNetPipeline``): ``net`` a
    ``FluxControlNetModel`` or ``FluxMultiControlNetModel``; each row's control input is its crop, VAE-encoded and
    packed like the latents (InstantX-style) or in pixels in [-1, 1] (XLabs-style,
    :meth:`syncguide.models.flux.FluxBackbone.control_inputs`)."""

    def flux_residuals(
        self,
        packed: torch.Tensor,
        timestep: torch.Tensor,
        guidance_scale: float,
        text: dict[str, torch.Tensor],
        txt_ids: torch.Tensor,
        img_ids: torch.Tensor,
        images: list[torch.Tensor],
    ) -> dict[str, Any]:
        """The transformer's extra keywords (``controlnet_block_samples``, ``controlnet_single_block_samples``) for
        packed latents ``(n, L, 4C)`` at ``timestep`` ``(n,)`` (already / 1000) with the prompt's ``text`` rows
        (``prompt_embeds``, ``pooled_prompt_embeds``) and each ControlNet's packed control tokens ``(n, L, 4C)``.
        The guidance embedding is given where the (first) ControlNet has one, as diffusers does."""
        n, scales = packed.shape[0], self.step_scales()
        multi = isinstance(self.net, FluxMultiControlNetModel)
        first = nets_of(self.net)[0]
        guidance = None
        if first.config.guidance_embeds:
            guidance = torch.full([1], guidance_scale, device=packed.device, dtype=torch.float32).expand(n)
        modes = [torch.full((n,), -1, dtype=torch.long, device=packed.device)] * len(images)  # no union mode
        blocks, singles = self.net(
            hidden_states=packed,
            controlnet_cond=images if multi else images[0],
            controlnet_mode=modes if multi else None,
            conditioning_scale=scales if multi else scales[0],
            timestep=timestep,
            guidance=guidance,
            pooled_projections=text["pooled_prompt_embeds"],
            encoder_hidden_states=text["prompt_embeds"],
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )
        repeat = xlabs_style(first)  # XLabs' few blocks are reused over all of the transformer's, as diffusers does
        return {
            "controlnet_block_samples": blocks,
            "controlnet_single_block_samples": singles,
            "controlnet_blocks_repeat": repeat,
        }


def as_multi(controlnet: Any) -> torch.nn.Module | None:
    """One ControlNet as given; a list or tuple of several as diffusers' ``MultiControlNetModel`` (FLUX.1's:
    ``FluxMultiControlNetModel``). A saved pipeline's model_index.json entry that diffusers hands over unloaded
    (``[None, None]``: none; ``["diffusers", "ControlNetModel"]``: loaded by
    :meth:`syncguide.pipeline.SyncDiffusionPipeline.from_pretrained` instead) is None."""
    if isinstance(controlnet, list | tuple) and all(net is None or isinstance(net, str) for net in controlnet):
        return None
    if isinstance(controlnet, list | tuple):
        if len(controlnet) == 1:
            return controlnet[0]
        if all(isinstance(net, FluxControlNetModel) for net in controlnet):
            return FluxMultiControlNetModel(list(controlnet))
        return MultiControlNetModel(list(controlnet))
    return controlnet


def nets_of(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The ControlNets ``net`` holds (one, or a multi-ControlNet's)."""
    return list(net.nets) if isinstance(net, MultiControlNetModel | FluxMultiControlNetModel) else [net]


def n_nets(net: torch.nn.Module) -> int:
    """How many ControlNets ``net`` holds."""
    return len(nets_of(net))


def xlabs_style(net: torch.nn.Module) -> bool:
    """Whether a FLUX ControlNet is XLabs-style: it reads the control image in pixels through its own hint block
    (and its block samples repeat over the transformer's blocks); InstantX-style ones read VAE latents."""
    return getattr(net, "input_hint_block", None) is not None


def check_controlnet(net: torch.nn.Module, family: str, denoiser: torch.nn.Module) -> None:
    """SettingError (``controlnet``) unless every ControlNet of ``net`` is made for ``family``'s ``denoiser``: a
    ``ControlNetModel`` of the UNet's widths (and ``text_time`` added conditioning for SDXL only), or an InstantX-
    or XLabs-style ``FluxControlNetModel`` of the transformer's widths (not a union one, not a mix of the two
    styles); SD3 ControlNets are not supported yet. The widths compared: :data:`WIDTH_KEYS`."""
    name = families.NAMES[family]
    for one in nets_of(net):
        config = one.config
        if family in (families.SD, families.SDXL) and isinstance(one, ControlNetModel):
            made_for = families.SDXL if config.addition_embed_type == "text_time" else families.SD
            if made_for != family:
                raise SettingError("controlnet", f"is a ControlNet for {families.NAMES[made_for]}; the model is {name}")
        elif family == families.FLUX and isinstance(one, FluxControlNetModel):
            if one.union:
                rule = "is a union FLUX ControlNet (control_mode): not supported yet (InstantX- and XLabs-style are)"
                raise SettingError("controlnet", rule)
            if xlabs_style(one) != xlabs_style(nets_of(net)[0]):
                raise SettingError("controlnet", "mixes XLabs-style and InstantX-style FLUX ControlNets")
        elif family in CONTROL_FAMILIES:
            wanted = "FluxControlNetModel" if family == families.FLUX else "ControlNetModel"
            raise SettingError("controlnet", f"is a {type(one).__name__}; {name} takes a {wanted}")
        else:
            raise SettingError("controlnet", f"is not supported for {name} yet (SD 1.x/2.x, SDXL and FLUX.1 are)")
        for key in WIDTH_KEYS[family]:
            if config.get(key) != denoiser.config.get(key):
                rule = f"has {key} {config.get(key)}, the model's {denoiser.config.get(key)} (made for another model)"
                raise SettingError("controlnet", rule)


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
