"""Semantic Diffusion Guidance objectives: functions F(x_t, t) to maximise, one small object each.

References:
    Liu, Park, Azadi, Zhang, Chopikyan, Hu, Shi, Rohrbach, Darrell. "More Control for Free! Image Synthesis with
    Semantic Diffusion Guidance", WACV 2023 (arXiv 2112.05744).

A guidance object returns a *per-sample* objective ``(B,)`` of images ``x`` ``(B, 3, H, W)`` in [-1, 1] (noisy x_t
for pixel models with the diffusion timestep ``t``; a decoded clean estimate with ``t=None`` for latent models).
It is already multiplied by its ``weight``; :func:`guidance_gradient` turns it into ``grad_x F``; the sampler
decides how the gradient is applied (DDPM mean shift or eps shift). Each has an active window ``steps=(start,
end)``: fractions of the sampling run, active when ``start <= i / n < end`` at step ``i`` of ``n``.

The encoder is a :class:`~syncguide.models.clip_towers.CLIPTower` (plain) or a
:class:`~syncguide.models.noise_aware.NoiseAwareCLIP` (reads x_t at its timestep).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from syncguide.features import gram
from syncguide.schedulers import q_sample

__all__ = [
    "ContentGuidance",
    "Guidance",
    "MultiGuidance",
    "ReferenceGuidance",
    "StyleGuidance",
    "TextGuidance",
    "gram",
    "guidance_gradient",
    "q_sample",
]


def _check(weight: float, steps: tuple[float, float]) -> None:
    if not math.isfinite(weight):
        raise ValueError(f"weight must be finite, got {weight}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    start, end = steps
    if not 0 <= start < end <= 1:
        raise ValueError(f"steps must be (start, end) with 0 <= start < end <= 1, got {steps}")


@dataclass
class Guidance:
    """Base: ``weight`` (>= 0) and the active window ``steps`` of the run. Subclasses define :meth:`objective`."""

    weight: float = 1.0
    steps: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        _check(self.weight, self.steps)

    def active(self, i: int, n: int) -> bool:
        """Whether this guidance acts at step ``i`` (0-based) of ``n``."""
        return self.weight > 0 and self.steps[0] <= i / n < self.steps[1]

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        """Unweighted F ``(B,)`` of images ``x`` ``(B, 3, H, W)``; differentiable in ``x``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, t: torch.Tensor | None, i: int = 0, n: int = 1) -> torch.Tensor | None:
        """``weight * F`` ``(B,)``, or None when inactive at step ``i`` of ``n``."""
        return self.weight * self.objective(x, t) if self.active(i, n) else None


@dataclass
class TextGuidance(Guidance):
    """Language guidance: cos(E_I(x_t, t), E_T(text)) per sample.

    ``text`` is one prompt for the whole batch or one per sample; the text embeddings come from the encoder's frozen
    text tower, computed once.
    """

    encoder: torch.nn.Module = None
    text: str | Sequence[str] = ""
    _text_embeds: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder is None:
            raise ValueError("text guidance needs a CLIP encoder (clip=...)")
        texts = [self.text] if isinstance(self.text, str) else list(self.text)
        if not texts or not all(isinstance(s, str) and s.strip() for s in texts):
            raise ValueError("text must be a non-empty prompt (or a list of them)")
        self._text_embeds = F.normalize(_wide(self.encoder.embed_text(texts)), dim=-1)

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        image = F.normalize(_wide(self.encoder.embed(x, t)), dim=-1)
        text = _per_sample(self._text_embeds.to(image.device, image.dtype), x.shape[0], "text")
        return (image * text).sum(-1)


@dataclass
class ReferenceGuidance(Guidance):
    """Base of the guidances towards a reference image, noised to the sample's timestep.

    ``reference`` ``(1 or B, 3, H, W)`` in [-1, 1] (resized to the samples' size); fresh noise for it at every call
    from ``generator``, or sample k's from ``generator[k]`` given a list of B generators (as diffusers' pipelines
    take them: a sample's draws then do not depend on the batch), no gradient through the reference.
    ``alphas_cumprod`` is the diffusion model's schedule;
    with ``t=None`` (clean images) the reference is used clean.
    """

    encoder: torch.nn.Module = None
    reference: torch.Tensor = None
    alphas_cumprod: torch.Tensor | None = None
    generator: torch.Generator | Sequence[torch.Generator] | None = None
    kind = "image"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder is None:
            raise ValueError(f"{self.kind} guidance needs a CLIP encoder (clip=...)")
        ref = self.reference
        if not isinstance(ref, torch.Tensor) or ref.dim() != 4 or ref.shape[1] != 3:
            raise ValueError(f"{self.kind} reference must be an image tensor (N, 3, H, W) in [-1, 1]")


@dataclass
class ContentGuidance(ReferenceGuidance):
    """Image-content guidance: cos(E_I(x_t, t), E_I(x'_t, t)), x'_t = the reference noised to the same t."""

    kind = "content"

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        reference = _noised_reference(self, x, t)
        with torch.no_grad():
            target = F.normalize(_wide(self.encoder.embed(reference, t)), dim=-1)
        image = F.normalize(_wide(self.encoder.embed(x, t)), dim=-1)
        return (image * target).sum(-1)


@dataclass
class StyleGuidance(ReferenceGuidance):
    """Image-style guidance: -sum over feature maps k of MSE(G(f_k(x_t)), G(f_k(x'_t))), per sample.

    The Gram matrices are per sample (:func:`gram`), so a sample's objective does not depend on its batch mates
    (the reference code's batch-mixed Gram is a bug not copied).
    """

    kind = "style"

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        reference = _noised_reference(self, x, t)
        with torch.no_grad():
            targets = [gram(f) for f in self.encoder.feature_maps(reference, t)]
        maps = self.encoder.feature_maps(x, t)
        losses = [((gram(f) - g) ** 2).flatten(1).mean(-1) for f, g in zip(maps, targets, strict=True)]
        return -torch.stack(losses).sum(0)


@dataclass
class MultiGuidance(Guidance):
    """Multimodal guidance: the sum of its parts' weighted objectives, each part with its own window.

    ``weight`` scales the sum (default 1); e.g. ``MultiGuidance(parts=[TextGuidance(weight=160, ...),
    ContentGuidance(weight=100, ...)])``.
    """

    parts: Sequence[Guidance] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.parts:
            raise ValueError("parts must hold at least one guidance")

    def active(self, i: int, n: int) -> bool:
        return super().active(i, n) and any(p.active(i, n) for p in self.parts)

    def objective(self, x: torch.Tensor, t: torch.Tensor | None, i: int = 0, n: int = 1) -> torch.Tensor:
        values = [v for v in (p(x, t, i, n) for p in self.parts) if v is not None]
        return torch.stack(values).sum(0)

    def __call__(self, x: torch.Tensor, t: torch.Tensor | None, i: int = 0, n: int = 1) -> torch.Tensor | None:
        return self.weight * self.objective(x, t, i, n) if self.active(i, n) else None


def guidance_gradient(
    guidance: Guidance | None,
    x: torch.Tensor,
    t: torch.Tensor | None,
    i: int,
    n: int,
    to_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """``grad_x`` of the weighted objective (float32 or wider, shape of ``x``), or None when nothing is active.

    ``to_image`` (optional, differentiable) maps ``x`` to the images the objective reads, e.g. latents to their
    decoded x0 prediction. Each sample's gradient depends only on that sample (the objectives are per sample).
    """
    if guidance is None or not guidance.active(i, n):
        return None
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = guidance(x if to_image is None else to_image(x), t, i, n)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return _wide(grad)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a half-precision type (Gram matrices and cosines overflow or round in
    bf16/fp16); float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _per_sample(values: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if values.shape[0] == batch:
        return values
    if values.shape[0] == 1:
        return values.expand(batch, *values.shape[1:])
    raise ValueError(f"{name} must hold 1 or {batch} entries (one per sample), got {values.shape[0]}")


def _noised_reference(guidance: ReferenceGuidance, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    reference = guidance.reference.to(x.device, x.dtype)
    if reference.shape[-2:] != x.shape[-2:]:
        reference = F.interpolate(reference, size=x.shape[-2:], mode="bilinear", align_corners=False)
    reference = _per_sample(reference, x.shape[0], "reference")
    if t is None:
        return reference
    if guidance.alphas_cumprod is None:
        raise ValueError("alphas_cumprod is needed to noise the reference to the sample's timestep")
    t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
    # Fresh float32 noise for the reference at every call, drawn on the CPU (the same draws on every device).
    generators = guidance.generator
    if isinstance(generators, Sequence):
        if len(generators) != x.shape[0]:
            raise ValueError(f"{len(generators)} reference generators for a batch of {x.shape[0]} (one per sample)")
        shape = (1, *reference.shape[1:])
        noise = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    else:
        noise = torch.randn(reference.shape, generator=generators, dtype=torch.float32)
    return q_sample(reference, t, guidance.alphas_cumprod, noise)
