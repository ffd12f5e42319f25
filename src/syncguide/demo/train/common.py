"""Shared parts of the demo-world training recipes: data, config overrides, learning rate, update step, run.

The loops and checkpoints are in :mod:`syncguide.training`.

A recipe is deterministic given its seed: the training data is a fixed set of crops drawn from the seed, and
batch k is drawn with a generator seeded from (seed, k), so a run resumed at step k continues exactly as an
uninterrupted one. Checkpoints hold weights as safetensors and the optimizer state through
``torch.save``/``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch

from syncguide.demo.world import crop_dataset
from syncguide.training import timer, train_loop

C = TypeVar("C")


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


def config_from_overrides(cls: type[C], what: str, overrides: dict[str, Any]) -> C:
    """``cls(**overrides)`` for a recipe's config dataclass; TypeError naming ``what`` for unknown fields.

    A ``block_out_channels`` list (as JSON gives it) becomes a tuple."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(names)}")
    if "block_out_channels" in overrides:
        overrides = {**overrides, "block_out_channels": tuple(overrides["block_out_channels"])}
    return cls(**overrides)


def warmup_cosine_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float = 0.0) -> float:
    """Learning rate of ``step`` of ``total``: linear warm-up over ``warmup`` steps, then cosine decay from
    ``lr`` to ``min_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    lr: float | None = None,
    clip: tuple[Iterable[torch.nn.Parameter], float] | None = None,
) -> None:
    """One update: set the learning rate to ``lr`` (if given), back-propagate ``loss``, clip the gradient norm
    of ``clip = (parameters, max_norm)`` (if given), step."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    optimizer.step()


def load_crops(desc: str, seed: int, n_data: int, start: int, steps: int) -> Crops:
    """:func:`make_crops` ``(seed, n_data)``, with a line saying how long it took and which steps follow."""
    with timer() as t:
        data = make_crops(seed, n_data)
    print(f"{desc}: {len(data)} training crops in {t['seconds']:.1f} s; steps {start} -> {steps}", flush=True)
    return data


def run_steps(
    step: Callable[[int], float],
    start: int,
    steps: int,
    stop_at: int | None,
    save: Callable[[int], None],
    every: int,
    desc: str,
) -> bool:
    """:func:`syncguide.training.train_loop` from ``start`` to ``steps``, or only to ``stop_at`` (a simulated
    interruption); True when the run reached ``steps``."""
    end = steps if stop_at is None else max(start, min(steps, stop_at))
    train_loop(step, start, end, save, every=every, desc=desc)
    return end == steps
