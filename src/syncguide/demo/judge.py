"""The attribute classifier ("judge") of the demo world: a small CNN, independent of CLIP.

It predicts the four attributes ``time``, ``season`` (global) and ``terrain``, ``water`` (majority of the crop) of a
64 x 64 crop in [-1, 1]; its pooled features serve content retrieval and FID-like statistics. It was trained to
read 32-px model samples too (:mod:`syncguide.demo.train.judge`), which ``predict`` brings to 64 px with bilinear
interpolation.

Example::

    judge = load_judge(bundled("judge"))
    labels = judge.predict(images)  # {"time": LongTensor (B,), ...}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from syncguide.demo.world import SEASONS, TERRAINS, TIMES, WATERS

__all__ = ["ATTRIBUTES", "DEFAULT_CONFIG", "RESOLUTION", "Judge", "load_judge", "save_judge", "to_resolution"]

ATTRIBUTES: dict[str, tuple[str, ...]] = {"time": TIMES, "season": SEASONS, "terrain": TERRAINS, "water": WATERS}
"""The attributes the judge predicts, with their values (class ``i`` is ``values[i]``)."""
RESOLUTION = 64
"""Input size of the network; ``predict`` resizes other sizes to it."""
DEFAULT_CONFIG: dict[str, Any] = {"channels": (32, 64, 96, 128), "groups": 8}
"""Output widths of the strided blocks (the last is the feature dimension) and GroupNorm groups."""


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class Judge(nn.Module):
    """A small CNN: strided 3x3 conv blocks (conv, GroupNorm, SiLU; 64 -> 32 -> 16 -> 8 -> 4 px), all but the last
    followed by a 3x3 conv block at the same size; global average pooling gives the features, linear heads the
    logits of each attribute."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 96, 128), groups: int = 8, **unused: Any) -> None:
        super().__init__()
        if unused:
            raise ValueError(f"unknown judge config keys: {sorted(unused)}")
        if not channels:
            raise ValueError("channels must not be empty")
        self.config = {"channels": tuple(int(c) for c in channels), "groups": int(groups)}
        layers: list[nn.Module] = []
        previous = 3
        for index, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), _norm(width, groups), nn.SiLU()]
            if index < len(channels) - 1:
                layers += [nn.Conv2d(width, width, 3, padding=1), _norm(width, groups), nn.SiLU()]
            previous = width
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(previous, len(values)) for name, values in ATTRIBUTES.items()})

    @property
    def feature_dim(self) -> int:
        """Size D of ``features``."""
        return self.config["channels"][-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)`` of images ``(B, 3, 64, 64)`` in [-1, 1]."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``{attribute: (B, n_values)}`` of images ``(B, 3, 64, 64)`` in [-1, 1]."""
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted class indices ``{attribute: LongTensor (B,)}`` of images ``(B, 3, H, W)`` in [-1, 1].

        Images of another size are resized to 64 x 64 (bilinear) first.
        """
        x = to_resolution(x)
        return {name: logits.argmax(dim=1) for name, logits in self(x).items()}


def to_resolution(x: torch.Tensor, size: int = RESOLUTION) -> torch.Tensor:
    """``x`` (B, 3, H, W) resized to ``size`` x ``size`` with bilinear interpolation (unchanged if already so)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def save_judge(judge: Judge, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(judge, str(directory / "model.safetensors"))
    config = {**judge.config, "channels": list(judge.config["channels"]), "attributes": ATTRIBUTES}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_judge(directory: str | Path) -> Judge:
    """The judge saved by ``save_judge`` in ``directory`` (safetensors only), in eval mode."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    attributes = {k: tuple(v) for k, v in config.pop("attributes", ATTRIBUTES).items()}
    if attributes != ATTRIBUTES:
        raise ValueError(f"judge in {directory} was trained for other attributes: {attributes}")
    judge = Judge(**config)
    load_model(judge, str(directory / "model.safetensors"))
    return judge.eval()
