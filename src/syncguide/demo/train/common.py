"""Shared data of the demo-world training recipes (the loops and checkpoints are in :mod:`syncguide.training`).

A recipe is deterministic given its seed: the training data is a fixed set of crops drawn from the seed, and
batch k is drawn with a generator seeded from (seed, k), so a run resumed at step k continues exactly as an
uninterrupted one. Checkpoints hold weights as safetensors and the optimizer state through
``torch.save``/``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from syncguide.demo.world import crop_dataset


@dataclass(frozen=True)
class Crops:
    """A fixed training set of world crops: images ``(n, 3, s, s)`` float in [-1, 1] and integer labels."""

    images: torch.Tensor
    labels: dict[str, torch.Tensor]
    captions: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
        """Rows ``indices`` of the set."""
        labels = {key: value[indices] for key, value in self.labels.items()}
        return self.images[indices], labels, [self.captions[i] for i in indices.tolist()]


def make_crops(seed: int, n: int, size: int = 64) -> Crops:
    """``n`` crops of the world drawn from ``seed``, resized to ``size`` (area averaging) if below 64."""
    images, labels, captions = crop_dataset(seed, n)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    if size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return Crops(x, {k: torch.from_numpy(v) for k, v in labels.items()}, captions)
