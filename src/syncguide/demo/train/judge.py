"""Recipe: train the demo world's attribute classifier ("judge", the model is :mod:`syncguide.demo.judge`).

Training augments with random horizontal flips and, with probability 0.5, a 32-px round trip (bilinear down and
up), so the judge also reads 32-px model samples, which ``predict`` brings to 64 px with bilinear interpolation.

Example::

    model_dir = train(Path("runs/judge"), steps=3000)
    judge = load_judge(model_dir)
    labels = judge.predict(images)  # {"time": LongTensor (B,), ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from syncguide.demo.judge import ATTRIBUTES, DEFAULT_CONFIG, Judge, load_judge, save_judge
from syncguide.demo.train.common import load_crops, make_crops, optimizer_step, run_steps, warmup_cosine_lr
from syncguide.training import Checkpoint, batch_indices, resume_step, step_generator

__all__ = ["augment", "evaluate", "judge_loss", "lowres_roundtrip", "train"]


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
        data = load_crops("judge", seed, n_data, start, steps)
        judge.train()

        def step_fn(k: int) -> float:
            generator = step_generator(seed, k)
            images, labels, _ = data.batch(batch_indices(len(data), batch_size, generator))
            images = augment(images, generator)
            loss = judge_loss(judge, images, labels)
            optimizer_step(optimizer, loss, warmup_cosine_lr(k, steps, lr, warmup))
            return float(loss.detach())

        def save(k: int) -> None:
            checkpoint.save(k, {"judge": judge}, optimizer, settings)

        if not run_steps(step_fn, start, steps, stop_at, save, every, "judge"):
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
