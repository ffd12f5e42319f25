"""Memory preflight: estimate what a panorama needs before sampling, refuse what clearly cannot fit.

The estimate is analytic, from the model configs (``block_out_channels``, ``layers_per_block``), because tracing
the models on the meta device costs more than a tiny model's whole run. It counts the activations of the
convolutional levels (about 8 tensors of C x H x W per ResNet layer, as GroupNorm, SiLU, conv twice, the
residual), which dominate SD-family UNets and VAE decoders, and leaves out attention matrices (PyTorch's fused
attention does not materialise them), the text encoder and the perceptual network. It is therefore a lower
bound: a run it refuses cannot fit; a run it allows may still run out of memory, and that error is reported the
same way (:class:`~syncguide.errors.OutOfMemory`).

Three phases, the largest of which must fit beside the loaded weights:

- a denoising call: ``rows`` windows (twice with classifier-free guidance), no gradient: the UNet's skip
  connections plus a few of its largest tensors;
- a sync gradient pass (SyncDiffusion): ``sync_batch_size`` windows through the UNet and the decoder with every
  activation kept for the backward (with gradient checkpointing: the block inputs only, taken as the no-gradient
  peak);
- the final decode of the whole canvas, no gradient: a few of the decoder's full-resolution tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from syncguide.errors import OutOfMemory

TENSORS_PER_LAYER = 8
"""Activation tensors one ResNet layer keeps for the backward: norm, SiLU, conv, norm, SiLU, conv, residual, time."""
LIVE_TENSORS = 4
"""Tensors of the largest level alive at once without gradients (input, output, two temporaries)."""


@dataclass(frozen=True)
class Levels:
    """A convolutional stack's levels: channels ``(L,)``, layers per level and each level's pixels relative to the
    input (``scale`` ** k, k = 0 .. L-1: 4 for a decoder that upsamples, 1/4 for a UNet's encoder)."""

    channels: tuple[int, ...]
    layers: int
    scale: float

    def elements(self, pixels: int) -> tuple[float, float]:
        """``(kept, largest)``: elements kept for a backward over all levels, and the largest level's tensor,
        for an input of ``pixels`` pixels."""
        sizes = [c * pixels * self.scale**k for k, c in enumerate(self.channels)]
        return TENSORS_PER_LAYER * self.layers * sum(sizes), max(sizes)


def unet_levels(config: Mapping[str, Any]) -> Levels | None:
    """The UNet's levels (encoder and decoder paths together: 2 x layers_per_block + 1 layers per level), or None
    for a denoiser without ``block_out_channels`` (a transformer)."""
    channels = config.get("block_out_channels")
    if not channels:
        return None
    layers = config.get("layers_per_block", 2)
    layers = max(layers) if isinstance(layers, Sequence) else layers
    return Levels(tuple(channels), 2 * int(layers) + 1, 0.25)


def decoder_levels(config: Mapping[str, Any]) -> Levels | None:
    """An AutoencoderKL decoder's levels (``layers_per_block`` + 1 per level, widest first, each upsampled 2x);
    None for a decoder whose config has no ``block_out_channels`` (e.g. AutoencoderTiny)."""
    channels = config.get("block_out_channels")
    if not channels:
        return None
    return Levels(tuple(reversed(channels)), int(config.get("layers_per_block", 2)) + 1, 4.0)


@dataclass(frozen=True)
class Need:
    """Bytes each phase needs (activations only) and the phase that needs most."""

    denoise: float
    sync: float
    decode: float

    @property
    def peak(self) -> tuple[str, float]:
        """``(phase, bytes)`` of the largest phase."""
        return max(
            (("a denoising call", self.denoise), ("the sync pass", self.sync), ("the decode", self.decode)),
            key=lambda item: item[1],
        )


def estimate(
    unet: Mapping[str, Any],
    decoder: Mapping[str, Any],
    latent: tuple[int, int],
    window: int,
    images: int,
    rows: int,
    guided: bool,
    sync_rows: int,
    checkpointing: bool,
    element_size: int,
    control: bool = False,
) -> Need:
    """The activations (bytes) of each phase of a panorama with a canvas of ``latent`` ``(h, w)`` latent pixels.

    ``window`` is the window's side in latent pixels, ``images`` the panoramas made at once, ``rows`` windows per
    denoising call, ``guided`` whether classifier-free guidance doubles them, ``sync_rows`` windows per sync
    gradient pass (0 without sync), ``checkpointing`` the sync pass' gradient checkpointing, ``element_size``
    bytes per value (4 for float32). ``control``: a ControlNet (the UNet's encoder copied) runs beside the UNet:
    its residuals (as many as the UNet's skips) are alive during a call, and the sync pass keeps its activations
    too (half the UNet's: the encoder's)."""
    u, d = unet_levels(unet), decoder_levels(decoder)
    cfg = 2 if guided else 1
    unet_kept, unet_big = u.elements(window * window) if u else (0.0, 0.0)
    dec_kept, dec_big = d.elements(window * window) if d else (0.0, 0.0)
    skips = unet_kept / TENSORS_PER_LAYER / 2  # the encoder's outputs, kept for the decoder path
    residuals = skips if control else 0.0
    denoise = rows * cfg * (skips + residuals + LIVE_TENSORS * unet_big)
    if checkpointing:
        sync = sync_rows * (cfg * (skips + residuals + LIVE_TENSORS * unet_big) + LIVE_TENSORS * dec_big)
    else:
        sync = sync_rows * (cfg * (unet_kept + (unet_kept / 2 if control else 0.0)) + dec_kept)
    decode = images * LIVE_TENSORS * (d.elements(latent[0] * latent[1])[1] if d else 0.0)
    return Need(denoise * element_size, sync * element_size, decode * element_size)


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (CUDA: the driver's free memory; CPU: available RAM; MPS: the recommended
    maximum minus what is allocated), or None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
    if device.type == "cpu":
        try:
            import psutil  # accelerate's dependency, so always installed with us
        except ImportError:
            return None
        return int(psutil.virtual_memory().available)
    return None


STATE_COPIES = (6, 8)
"""Copies of the window stack (views, model outputs, x0, noise, ...) and of the canvas (latents, sums, counts,
the scheduler's state) alive during a step."""


def state_bytes(
    latent: tuple[int, int], window: int, channels: int, images: int, rows: int, element_size: int, cond_row: int
) -> float:
    """Bytes of the sampler's own state: the ``rows`` windows per image of ``channels`` x ``window`` x ``window``
    latents, the canvas of ``latent`` ``(h, w)``, and ``cond_row`` bytes of conditioning repeated for every row."""
    stack, canvas = STATE_COPIES
    per_image = stack * rows * channels * window * window + canvas * channels * latent[0] * latent[1]
    return images * (per_image * element_size + rows * cond_row)


def check_fits(need: Need, device: torch.device, state: float = 0.0, free: int | None = None) -> None:
    """:class:`~syncguide.errors.OutOfMemory` if the sampler's ``state`` (bytes) with the largest phase of
    ``need`` is more than ``device`` has free (``free`` bytes, default :func:`free_memory`); a state that alone
    does not fit is reported as the window stack's (a smaller canvas or a larger stride fits)."""
    free = free_memory(device) if free is None else free
    if free is None:
        return
    phase, size = need.peak
    if state > free:
        raise OutOfMemory("the window stack", str(device), state, free)
    if state + size > free:
        raise OutOfMemory(phase, str(device), state + size, free)
