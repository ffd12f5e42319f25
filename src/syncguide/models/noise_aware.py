"""Noise-aware CLIP image encoder: a CLIP tower whose normalisation layers are modulated by the diffusion timestep.

SDG (Liu et al., WACV 2023) fine-tunes CLIP's image encoder to read noisy images x_t. The timestep goes through
a sinusoidal embedding and an MLP to a per-channel ``(scale, shift)`` for every normalisation layer of the image
tower, applied to the layer's output as ``h * (1 + scale) + shift``. The MLP's last layer is zero-initialised,
so before fine-tuning the encoder is exactly the original one at every timestep.

``t=None`` everywhere means "a clean image": no modulation (the original encoder's computation with the current
weights).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from syncguide.models.clip_towers import CLIPTower

TIME_DIM = 128


def timestep_embedding(t: torch.Tensor, dim: int = TIME_DIM, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings ``(B, dim)`` of integer timesteps ``t`` ``(B,)`` (as in DDPM / guided-diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NoiseAwareCLIP(nn.Module):
    """Wrap a :class:`CLIPTower` with timestep conditioning; same interface, plus ``t``.

    Args:
        tower: the CLIP adapter to condition (modified in place by forward hooks: pass a copy to keep the original).
        hidden: width of the timestep MLP.
    """

    def __init__(self, tower: CLIPTower, hidden: int = 256) -> None:
        super().__init__()
        self.tower = tower
        self.norms = tower.norm_layers()
        if not self.norms:
            raise ValueError("the CLIP image tower has no normalisation layers to condition on the timestep")
        self.channels = [c for _, c in self.norms]
        self.time_mlp = nn.Sequential(nn.Linear(TIME_DIM, hidden), nn.SiLU(), nn.Linear(hidden, 2 * sum(self.channels)))
        nn.init.zeros_(self.time_mlp[-1].weight)
        nn.init.zeros_(self.time_mlp[-1].bias)
        self._modulation: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for index, (module, _) in enumerate(self.norms):
            module.register_forward_hook(self._hook(index))

    @property
    def resolution(self) -> int:
        return self.tower.resolution

    def _hook(self, index: int):
        def modulate(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
            if self._modulation is None:
                return None
            scale, shift = self._modulation[index]
            return output * (1 + _along_channels(scale, output, module)) + _along_channels(shift, output, module)

        return modulate

    @contextlib.contextmanager
    def _at(self, t: torch.Tensor | None, batch: int) -> Iterator[None]:
        if t is None:
            yield
            return
        t = t.reshape(-1).expand(batch) if t.numel() in (1, batch) else t
        weight = self.time_mlp[0].weight
        params = self.time_mlp(timestep_embedding(t.to(weight.device)).to(weight.dtype))
        scales, shifts = params.chunk(2, dim=-1)
        self._modulation = list(
            zip(scales.split(self.channels, dim=-1), shifts.split(self.channels, dim=-1), strict=True)
        )
        try:
            yield
        finally:
            self._modulation = None

    def embed(self, images: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``(B, D)`` of images ``(B, 3, H, W)`` in [-1, 1] at timesteps ``t`` ``(B,)`` or scalar."""
        with self._at(t, images.shape[0]):
            return self.tower.embed(images)

    def feature_maps(self, images: torch.Tensor, t: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Intermediate feature maps, each ``(B, C, N)``, at timesteps ``t``."""
        with self._at(t, images.shape[0]):
            return self.tower.feature_maps(images)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(n, D)`` from the frozen, unmodified text tower."""
        return self.tower.embed_text(texts)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What fine-tuning changes: the image tower and the timestep MLP (the text tower stays the original's)."""
        state = {f"visual.{k}": v for k, v in self.tower.visual.state_dict().items()}
        state.update({f"time_mlp.{k}": v for k, v in self.time_mlp.state_dict().items()})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`trainable_state` (strict: every key must match)."""
        visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
        time = {k[len("time_mlp.") :]: v for k, v in state.items() if k.startswith("time_mlp.")}
        self.tower.visual.load_state_dict(visual)
        self.time_mlp.load_state_dict(time)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.tower.visual.parameters(), *self.time_mlp.parameters()]


def _along_channels(values: torch.Tensor, output: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Shape ``(B, C)`` per-sample channel values to broadcast against a norm layer's ``output``."""
    batch = values.shape[0]
    if isinstance(module, nn.LayerNorm):  # channels last: (B, C), (B, N, C) or sequence-first (N, B, C)
        if output.dim() == 2:
            return values
        if output.shape[0] == batch:
            return values[:, None, :]
        return values[None, :, :]
    return values.view(batch, -1, *([1] * (output.dim() - 2)))  # channels second: BatchNorm2d, GroupNorm
