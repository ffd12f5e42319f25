"""The attribute classifier ("judge") of the demo world: a small CNN, independent of CLIP.

It predicts the four attributes ``time``, ``season`` (global) and ``terrain``, ``water`` (majority of the crop) of a
64 x 64 crop in [-1, 1]; its pooled features serve content retrieval and FID-like statistics. Training augments
with random horizontal flips and, with probability 0.5, a 32-px round trip (bilinear down and up), so the judge
also reads 32-px model samples, which ``predict`` brings to 64 px with bilinear interpolation.

Example::

    model_dir = train(Path("runs/judge"), steps=3000)
    judge = load_judge(model_dir)
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

from syncguide.demo.train.common import make_crops
from syncguide.demo.world import SEASONS, TERRAINS, TIMES, WATERS
from syncguide.training import Checkpoint, batch_indices, resume_step, step_generator, timer, train_loop

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_CONFIG",
    "Judge",
    "augment",
    "evaluate",
    "judge_loss",
    "load_judge",
    "save_judge",
    "train",
]

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


def lowres_roundtrip(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Bilinear down to ``size`` and back up to the original size."""
    small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def augment(x: torch.Tensor, generator: torch.Generator, lowres_prob: float = 0.5) -> torch.Tensor:
    """Training augmentation: per image a horizontal flip (p 0.5) and a 32-px round trip (p ``lowres_prob``)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    low = torch.rand(x.shape[0], generator=generator) < lowres_prob
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return torch.where(low[:, None, None, None], lowres_roundtrip(x), x)


def judge_loss(judge: Judge, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the attributes of the cross-entropy of ``judge(images)`` against ``labels``."""
    logits = judge(images)
    return sum(F.cross_entropy(logits[name], labels[name]) for name in ATTRIBUTES)  # type: ignore[return-value]


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


def _learning_rate(step: int, total: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    out: str | Path,
    steps: int = 3000,
    seed: int = 0,
    batch_size: int = 64,
    n_data: int = 20000,
    resume: bool = True,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    warmup: int = 100,
    every: int = 500,
    config: dict[str, Any] | None = None,
    stop_at: int | None = None,
) -> Path:
    """Train the judge deterministically into ``out`` and export it to ``out/model``; returns that directory.

    The data are ``n_data`` crops drawn from ``seed``; batch k is drawn (and augmented) with
    ``step_generator(seed, k)``. AdamW with linear warm-up and cosine decay. A checkpoint is written to
    ``out/checkpoint`` every ``every`` steps and at the end; with ``resume`` a run continues from it (bit for bit
    as an uninterrupted run), otherwise it starts afresh. ``config`` overrides ``DEFAULT_CONFIG``. ``stop_at``
    stops after that many steps as if interrupted (checkpoint written, nothing exported) and returns the
    checkpoint directory.
    """
    out = Path(out)
    config = {**DEFAULT_CONFIG, **(config or {})}
    torch.manual_seed(seed)
    judge = Judge(**config)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=weight_decay)
    checkpoint = Checkpoint(out / "checkpoint")
    settings = {"seed": seed, "batch_size": batch_size, "n_data": n_data, "lr": lr, "steps": steps}
    start = resume_step(checkpoint, {"judge": judge}, optimizer, settings, resume)
    if start < steps:
        with timer() as t:
            data = make_crops(seed, n_data)
        print(f"judge: {len(data)} training crops in {t['seconds']:.1f} s; steps {start} -> {steps}", flush=True)
        judge.train()

        def step_fn(k: int) -> float:
            generator = step_generator(seed, k)
            images, labels, _ = data.batch(batch_indices(len(data), batch_size, generator))
            images = augment(images, generator)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(k, steps, lr, warmup)
            loss = judge_loss(judge, images, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        def save(k: int) -> None:
            checkpoint.save(k, {"judge": judge}, optimizer, settings)

        end = steps if stop_at is None else max(start, min(steps, stop_at))
        train_loop(step_fn, start, end, save, every=every, desc="judge")
        if end < steps:
            return checkpoint.directory
    return save_judge(judge.eval(), out / "model")


@torch.no_grad()
def evaluate(model_dir: str | Path, seed: int = 12345, n: int = 2000, batch_size: int = 250) -> dict[str, float]:
    """Accuracy of the judge in ``model_dir`` per attribute on ``n`` fresh crops drawn from ``seed``.

    Keys ``<attribute>`` at 64 px, and ``<attribute>_32`` for the same crops brought to 32 px (area averaging, as
    the 32-px training data of the models) and back to 64 by ``predict`` (bilinear).
    """
    judge = load_judge(model_dir)
    data = make_crops(seed, n)
    correct = {f"{name}{suffix}": 0 for suffix in ("", "_32") for name in ATTRIBUTES}
    for begin in range(0, n, batch_size):
        images = data.images[begin : begin + batch_size]
        small = F.interpolate(images, size=(32, 32), mode="area")
        for suffix, x in (("", images), ("_32", small)):
            predicted = judge.predict(x)
            for name in ATTRIBUTES:
                truth = data.labels[name][begin : begin + batch_size]
                correct[f"{name}{suffix}"] += int((predicted[name] == truth).sum())
    return {key: value / max(1, n) for key, value in correct.items()}
