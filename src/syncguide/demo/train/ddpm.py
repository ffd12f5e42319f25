"""Recipe: a tiny pixel-space unconditional DDPM of the demo world (32 x 32 crops), in diffusers format.

A ``UNet2DModel`` (three levels at 32, 16 and 8 pixels, self-attention at 8 x 8) predicts the noise of a linear
1000-step ``DDPMScheduler``. Crops are the world's 64 x 64 crops area-averaged to 32 x 32, randomly flipped
left-right. Training keeps an exponential moving average (EMA) of the weights, which is part of the checkpoint and
is what gets exported, as a ``DDPMPipeline`` in ``<out>/model``. Training is deterministic given ``seed`` (batch k,
its flips, noise and timesteps come from ``step_generator(seed, k)``) and resumable bit for bit.

Example::

    model_dir = train(Path("runs/ddpm"), steps=3000)
    images = sample(model_dir, n=16, seed=0)  # uint8 (16, 32, 32, 3), DDIM with 50 steps, eta 1
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from syncguide.demo.train.common import config_from_overrides, make_crops, optimizer_step, warmup_cosine_lr
from syncguide.demo.world import SEASONS, TIMES
from syncguide.training import Checkpoint, batch_indices, final_loss, step_generator, timer, train_loop

__all__ = [
    "DDPMConfig",
    "build_unet",
    "ddpm_loss",
    "denoise",
    "evaluate",
    "make_scheduler",
    "sample",
    "save_samples",
    "train",
]

SIZE = 32


@dataclass(frozen=True)
class DDPMConfig:
    """Architecture and optimisation settings; every field can be overridden by keyword in :func:`train`."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    attention_head_dim: int = 8
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    flip: bool = True
    bf16: bool = False
    """Train under CPU bfloat16 autocast (weights, EMA and optimizer stay float32)."""
    checkpoint_every: int = 250
    stop_at: int | None = None
    """Stop after this many steps without exporting (a simulated interruption; the schedule still uses
    ``steps``)."""

    @classmethod
    def from_overrides(cls, **overrides: Any) -> DDPMConfig:
        """The config with ``overrides`` (TypeError for unknown fields)."""
        return config_from_overrides(cls, "DDPM", overrides)


def build_unet(config: DDPMConfig | None = None, seed: int = 0) -> UNet2DModel:
    """A freshly initialised UNet (initialisation drawn from ``seed``, global RNG state untouched): plain
    residual levels, self-attention at the lowest (8 x 8) level and in the middle block."""
    config = config or DDPMConfig()
    levels = len(config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=SIZE,
            in_channels=3,
            out_channels=3,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            norm_num_groups=config.norm_num_groups,
            attention_head_dim=config.attention_head_dim,
        )


def make_scheduler() -> DDPMScheduler:
    """The training noise schedule: 1000 linear-beta steps, epsilon prediction."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")


def ddpm_loss(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x: torch.Tensor,
    generator: torch.Generator,
    config: DDPMConfig | None = None,
) -> torch.Tensor:
    """Epsilon-prediction MSE of images ``x`` in [-1, 1], with noise and timesteps drawn from ``generator``."""
    config = config or DDPMConfig()
    noise = torch.randn(x.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x.shape[0],), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        pred = unet(scheduler.add_noise(x, noise, t), t).sample.float()
    return F.mse_loss(pred, noise)


def _lr(config: DDPMConfig, k: int, steps: int) -> float:
    return warmup_cosine_lr(k, steps, config.lr, config.warmup, config.min_lr_ratio)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, k: int) -> None:
    """EMA after step ``k`` with the usual warm-up ``min(decay, (1 + k) / (10 + k))``."""
    d = min(decay, (1 + k) / (10 + k))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - d)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def train(
    out: Path,
    steps: int,
    seed: int = 0,
    batch_size: int = 64,
    n_data: int = 20000,
    resume: bool = True,
    **overrides: Any,
) -> Path:
    """Train the demo DDPM into ``out`` and export its EMA weights as a ``DDPMPipeline`` to ``out/model``;
    returns that directory.

    Checkpoints (weights, EMA, optimizer) go to ``out/checkpoint`` every ``checkpoint_every`` steps; with
    ``resume`` a run continues from there and ends bit for bit as an uninterrupted one (given the same
    arguments). ``overrides`` are :class:`DDPMConfig` fields. With ``stop_at`` the run stops early and returns
    ``out/checkpoint`` instead.
    """
    config = DDPMConfig.from_overrides(**overrides)
    out = Path(out)
    unet = build_unet(config, seed)
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler()
    checkpoint = Checkpoint(out / "checkpoint")
    modules = {"unet": unet, "ema": ema}
    start = checkpoint.load(modules, optimizer)["step"] if resume and checkpoint.exists() else 0
    end = steps if config.stop_at is None else min(steps, config.stop_at)
    data = make_crops(seed, n_data, SIZE)

    def step(k: int) -> float:
        generator = step_generator(seed, k)
        x = data.images[batch_indices(len(data), batch_size, generator)]
        if config.flip:
            flip = torch.rand(batch_size, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = ddpm_loss(unet, scheduler, x, generator, config)
        optimizer_step(optimizer, loss, _lr(config, k, steps), (unet.parameters(), config.grad_clip))
        _ema_update(ema, unet, config.ema_decay, k)
        return loss.item()

    def save(k: int) -> None:
        checkpoint.save(k, modules, optimizer, extra={"steps": steps, "seed": seed, "batch_size": batch_size})

    unet.train()
    with timer() as t:
        losses = (
            train_loop(step, start, end, save, every=config.checkpoint_every, desc="demo ddpm") if start < end else []
        )
    if end < steps:
        return checkpoint.directory
    model_dir = out / "model"
    DDPMPipeline(unet=ema.eval(), scheduler=scheduler).save_pretrained(model_dir, safe_serialization=True)
    summary = {
        "steps": steps,
        "resumed_from": start,
        "seconds": t["seconds"],
        "final_loss": final_loss(losses, last=100),
        "config": asdict(config),
    }
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return model_dir


@torch.no_grad()
def denoise(
    unet: UNet2DModel,
    scheduler: DDIMScheduler,
    n: int,
    seed: int,
    steps: int = 50,
    eta: float = 1.0,
    batch: int = 128,
) -> torch.Tensor:
    """``n`` DDIM samples (images in [-1, 1]) in ``steps`` steps, chunk c of ``batch`` drawn from
    ``step_generator(seed, c)`` (initial noise, then the step noise when ``eta`` > 0).

    The predicted clean image is clipped to [-1, 1] (``clip_sample``) and the noise estimate re-derived from it
    (``use_clipped_model_output``). With the raw noise estimate instead (diffusers' default), the clipped, noisy
    early predictions of this small model pull every sample towards grey and no night scene survives; with
    ``eta`` 1 (as stochastic as DDPM) the colour statistics match the data best.
    """
    scheduler.set_timesteps(steps)
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = []
    for chunk, start in enumerate(range(0, n, batch)):
        generator = step_generator(seed, chunk)
        x = torch.randn((min(batch, n - start), *shape), generator=generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = unet(x, t).sample
            x = scheduler.step(eps, t, x, eta=eta, use_clipped_model_output=True, generator=generator).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


def sample(model_dir: Path, n: int, seed: int, steps: int = 50, eta: float = 1.0) -> np.ndarray:
    """``n`` unconditional samples of the exported pipeline in ``model_dir``: uint8 ``(n, 32, 32, 3)``.

    Uses DDIM (``DDIMScheduler.from_config`` of the saved scheduler) with ``steps`` steps and ``eta`` (see
    :func:`denoise`); deterministic given ``(n, seed, steps, eta)``."""
    pipe = DDPMPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    images = denoise(pipe.unet.eval(), scheduler, n, seed, steps, eta)
    return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_samples(images: np.ndarray, path: Path, columns: int = 8, scale: int = 4) -> Path:
    """A PNG grid of uint8 ``(n, H, W, 3)`` images (2-pixel white gaps), enlarged ``scale`` times."""
    from syncguide.demo.world import save_image

    n, h, w, _ = images.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + 2) - 2, columns * (w + 2) - 2, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = image
    return save_image(path, grid, scale=scale)


def _colour_features(images: torch.Tensor) -> torch.Tensor:
    """4 x 4 area-averaged colours (48 values) of images in [-1, 1]: sky colour on top, ground colour below."""
    return F.interpolate(images, size=(4, 4), mode="area").flatten(1)


def _fractions(indices: torch.Tensor, values: tuple[str, ...]) -> dict[str, float]:
    counts = torch.bincount(indices, minlength=len(values)).double() / max(1, len(indices))
    return {value: round(counts[i].item(), 4) for i, value in enumerate(values)}


def evaluate(
    model_dir: Path,
    n: int = 256,
    seed: int = 777,
    steps: int = 50,
    eta: float = 1.0,
    n_data: int = 2000,
    judge_dir: Path | None = None,
) -> dict[str, Any]:
    """Coverage of the global attributes by ``n`` unconditional samples (:func:`sample` with ``seed``, ``steps``,
    ``eta``), without and with a classifier.

    * ``colour``: a nearest-centroid rule on 4 x 4 average colours, fitted on ``n_data`` fresh data crops per
      (time, season) pair (its accuracy on other data crops is ``colour_accuracy``); gives the fraction of
      samples per time and per season, next to the data's fractions;
    * ``sky``: mean brightness (in [0, 1]) of the top quarter of the image, per time of day as assigned by the
      colour rule, for the samples and for the data;
    * ``judge``: with ``judge_dir`` (a model of ``syncguide.demo.train.judge``), the fraction of samples judged
      for each value of time and season.

    ``covered`` says whether every value of every global attribute gets at least 2% of the samples (by the
    judge when given, else by the colour rule).
    """
    images = torch.from_numpy(sample(model_dir, n, seed, steps, eta)).permute(0, 3, 1, 2).float() / 127.5 - 1
    fit, check = make_crops(seed + 1, n_data, SIZE), make_crops(seed + 2, n_data, SIZE)
    joint = fit.labels["time"] * len(SEASONS) + fit.labels["season"]
    features = _colour_features(fit.images)
    centroids = torch.stack([features[joint == j].mean(0) for j in range(len(TIMES) * len(SEASONS))])

    def classify(x: torch.Tensor) -> dict[str, torch.Tensor]:
        j = torch.cdist(_colour_features(x), centroids).argmin(1)
        return {"time": j // len(SEASONS), "season": j % len(SEASONS)}

    def sky(x: torch.Tensor, time: torch.Tensor) -> dict[str, float | None]:
        brightness = ((x[:, :, : SIZE // 4] + 1) / 2).mean(dim=(1, 2, 3))
        return {
            v: (round(brightness[time == i].mean().item(), 4) if (time == i).any() else None)
            for i, v in enumerate(TIMES)
        }

    predicted, on_check = classify(images), classify(check.images)
    result: dict[str, Any] = {
        "n": n,
        "colour_accuracy": {a: (on_check[a] == check.labels[a]).double().mean().item() for a in ("time", "season")},
        "colour": {
            "samples": {a: _fractions(predicted[a], v) for a, v in (("time", TIMES), ("season", SEASONS))},
            "data": {a: _fractions(check.labels[a], v) for a, v in (("time", TIMES), ("season", SEASONS))},
        },
        "sky": {"samples": sky(images, predicted["time"]), "data": sky(check.images, check.labels["time"])},
        "pixel_mean": {"samples": ((images + 1) / 2).mean().item(), "data": ((check.images + 1) / 2).mean().item()},
        "pixel_std": {"samples": ((images + 1) / 2).std().item(), "data": ((check.images + 1) / 2).std().item()},
    }
    coverage = result["colour"]["samples"]
    if judge_dir is not None:
        from syncguide.demo.judge import load_judge

        judged = load_judge(judge_dir).predict(images)
        result["judge"] = {a: _fractions(judged[a], v) for a, v in (("time", TIMES), ("season", SEASONS))}
        coverage = result["judge"]
    result["covered"] = all(f >= 0.02 for fractions in coverage.values() for f in fractions.values())
    return result
