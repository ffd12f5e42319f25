"""Recipe: the demo world's tiny ``AutoencoderKL`` (the VAE of the demo Stable Diffusion).

64 x 64 RGB crops in [-1, 1] are encoded to 16 x 16 x 8 latents (3 levels, downsampling factor 4; 4 channels
reached only 26.8 dB PSNR, 8 reach 29.8). The loss is L1 + 5 x MSE reconstruction plus a small L1 term on the image
gradients (sharper edges) and a tiny KL term; AdamW with a
linear warm-up then cosine decay. Training is deterministic given ``seed`` (batch k and its posterior noise come
from ``step_generator(seed, k)``) and resumable bit for bit from ``<out>/checkpoint``. The exported model stores
``scaling_factor`` = 1 / std of posterior samples over ``n_scale`` training crops, so that latent diffusion sees
unit-variance latents.

Example::

    model_dir = train(Path("runs/vae"), steps=1200)
    evaluate(model_dir)["psnr"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL

from syncguide.demo.train.common import config_from_overrides, make_crops, optimizer_step, warmup_cosine_lr
from syncguide.training import Checkpoint, batch_indices, final_loss, resume_step, step_generator, timer, train_loop

__all__ = [
    "VAEConfig",
    "build_vae",
    "evaluate",
    "finetune_decoder",
    "reconstruct",
    "save_reconstructions",
    "train",
    "vae_loss",
]

SIZE = 64


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and optimisation settings; every field can be overridden by keyword in :func:`train`."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    latent_channels: int = 8
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    warmup: int = 50
    weight_decay: float = 1e-4
    l1_weight: float = 1.0
    mse_weight: float = 5.0
    edge_weight: float = 0.25
    kl_weight: float = 1e-6
    grad_clip: float = 1.0
    bf16: bool = True
    """Train under CPU bfloat16 autocast (weights and optimizer stay float32; about 2x faster on CPU)."""
    checkpoint_every: int = 200
    n_scale: int = 2000
    """Number of crops over which the latent std (hence ``scaling_factor``) is measured."""
    stop_at: int | None = None
    """Stop after this many steps without exporting (a simulated interruption; the schedule still uses
    ``steps``)."""

    @classmethod
    def from_overrides(cls, **overrides: Any) -> VAEConfig:
        """The config with ``overrides`` (TypeError for unknown fields)."""
        return config_from_overrides(cls, "VAE", overrides)


def build_vae(config: VAEConfig | None = None, seed: int = 0) -> AutoencoderKL:
    """A freshly initialised VAE (initialisation drawn from ``seed``, global RNG state untouched)."""
    config = config or VAEConfig()
    levels = len(config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            latent_channels=config.latent_channels,
            sample_size=SIZE,
        )


def vae_loss(
    vae: AutoencoderKL, x: torch.Tensor, generator: torch.Generator, config: VAEConfig | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of images ``x`` in [-1, 1]: weighted L1 / MSE / gradient-L1 reconstruction + KL.

    The latent is a posterior sample with noise from ``generator``; returns the loss and its parts."""
    config = config or VAEConfig()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        posterior = vae.encode(x).latent_dist
        mean, logvar = posterior.mean.float(), posterior.logvar.float()
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        rec = vae.decode(z).sample.float()
    diff = rec - x
    l1 = diff.abs().mean()
    mse = diff.pow(2).mean()
    edge = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean() + (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
    loss = config.l1_weight * l1 + config.mse_weight * mse + config.edge_weight * edge + config.kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "edge": edge.item(), "kl": kl.item()}


def _lr(config: VAEConfig, k: int, steps: int) -> float:
    return warmup_cosine_lr(k, steps, config.lr, config.warmup, config.min_lr_ratio)


@torch.no_grad()
def latent_statistics(vae: AutoencoderKL, images: torch.Tensor, seed: int, batch: int = 250) -> dict[str, float]:
    """Mean and std of posterior samples (float32) over ``images``."""
    generator = torch.Generator().manual_seed(seed)
    latents = []
    for start in range(0, len(images), batch):
        posterior = vae.encode(images[start : start + batch]).latent_dist
        latents.append(posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator))
    z = torch.cat(latents).double()
    return {"latent_mean": z.mean().item(), "latent_std": z.std().item()}


def train(
    out: Path,
    steps: int = 2000,
    seed: int = 0,
    batch_size: int = 32,
    n_data: int = 20000,
    resume: bool = True,
    **overrides: Any,
) -> Path:
    """Train the demo VAE into ``out`` and export it to ``out/model`` (diffusers format); returns that directory.

    Checkpoints go to ``out/checkpoint`` every ``checkpoint_every`` steps; with ``resume`` a run continues from
    there and ends bit for bit as an uninterrupted one (given the same arguments). ``overrides`` are
    :class:`VAEConfig` fields. With ``stop_at`` the run stops early and returns ``out/checkpoint`` instead.
    """
    config = VAEConfig.from_overrides(**overrides)
    out = Path(out)
    vae = build_vae(config, seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    checkpoint = Checkpoint(out / "checkpoint")
    start = checkpoint.load({"vae": vae}, optimizer)["step"] if resume and checkpoint.exists() else 0
    end = steps if config.stop_at is None else min(steps, config.stop_at)
    data = make_crops(seed, n_data, SIZE)

    def step(k: int) -> float:
        generator = step_generator(seed, k)
        x = data.images[batch_indices(len(data), batch_size, generator)]
        loss, _ = vae_loss(vae, x, generator, config)
        optimizer_step(optimizer, loss, _lr(config, k, steps), (vae.parameters(), config.grad_clip))
        return loss.item()

    def save(k: int) -> None:
        checkpoint.save(k, {"vae": vae}, optimizer, extra={"steps": steps, "seed": seed, "batch_size": batch_size})

    vae.train()
    with timer() as t:
        losses = (
            train_loop(step, start, end, save, every=config.checkpoint_every, desc="demo vae") if start < end else []
        )
    if end < steps:
        return checkpoint.directory
    vae.eval()
    stats = latent_statistics(vae, data.images[: config.n_scale], seed)
    vae.register_to_config(scaling_factor=1.0 / stats["latent_std"])
    model_dir = out / "model"
    vae.save_pretrained(model_dir, safe_serialization=True)
    summary = {
        "steps": steps,
        "resumed_from": start,
        "seconds": t["seconds"],
        "final_loss": final_loss(losses),
        "scaling_factor": 1.0 / stats["latent_std"],
        **stats,
        "config": asdict(config),
    }
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return model_dir


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Reconstructions (posterior mode, float32) of ``images`` in [-1, 1]."""
    out = [
        vae.decode(vae.encode(images[s : s + batch]).latent_dist.mode()).sample for s in range(0, len(images), batch)
    ]
    return torch.cat(out)


def evaluate(model_dir: Path, seed: int = 777, n: int = 1000) -> dict[str, float]:
    """Reconstruction quality on ``n`` fresh crops: mean per-image ``psnr`` (dB, images in [0, 1]), its std and
    minimum, ``mse`` and ``mae`` (in [0, 1] units)."""
    vae = AutoencoderKL.from_pretrained(model_dir).eval()
    images = make_crops(seed, n, SIZE).images
    rec = reconstruct(vae, images)
    x01, r01 = (images + 1) / 2, ((rec + 1) / 2).clamp(0, 1)
    mse = (x01 - r01).pow(2).mean(dim=(1, 2, 3)).double()
    psnr = 10 * torch.log10(1 / mse.clamp_min(1e-12))
    return {
        "psnr": psnr.mean().item(),
        "psnr_std": psnr.std().item(),
        "psnr_min": psnr.min().item(),
        "mse": mse.mean().item(),
        "mae": (x01 - r01).abs().mean().item(),
        "n": n,
    }


def save_reconstructions(model_dir: Path, path: Path, n: int = 8, seed: int = 777, scale: int = 4) -> Path:
    """A PNG of ``n`` fresh crops (top row) above their reconstructions (bottom row), enlarged ``scale`` times."""
    from syncguide.demo.world import save_image

    vae = AutoencoderKL.from_pretrained(model_dir).eval()
    images = make_crops(seed, n, SIZE).images
    rec = reconstruct(vae, images).clamp(-1, 1)

    def row(x: torch.Tensor) -> np.ndarray:
        pixels = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        gap = np.full((SIZE, 2, 3), 255, np.uint8)
        return np.concatenate([p for image in pixels for p in (image, gap)][:-1], axis=1)

    top, bottom = row(images), row(rec)
    grid = np.concatenate([top, np.full((2, top.shape[1], 3), 255, np.uint8), bottom])
    return save_image(path, grid, scale=scale)


def finetune_decoder(
    out: Path,
    base_dir: Path,
    steps: int,
    seed: int = 0,
    batch_size: int = 32,
    n_data: int = 20000,
    lr: float = 3e-4,
    resume: bool = True,
) -> Path:
    """Fine-tune only the decoder of the VAE in ``base_dir`` for PSNR (MSE on posterior samples); export to
    ``out/model``.

    The encoder, and so every latent a diffusion model was trained on, stays exactly the same, as does the
    ``scaling_factor``: a Stable Diffusion trained on the base VAE's latents can swap this decoder in.
    Deterministic and resumable like :func:`train` (cosine learning-rate decay over ``steps``).
    """
    out = Path(out)
    vae = AutoencoderKL.from_pretrained(base_dir)
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    checkpoint = Checkpoint(out / "checkpoint")
    settings = {"base": str(base_dir), "steps": steps, "seed": seed, "batch_size": batch_size, "lr": lr}
    start = resume_step(checkpoint, {"vae": vae}, optimizer, settings, resume)
    data = make_crops(seed, n_data, SIZE)
    config = VAEConfig(lr=lr, warmup=0)

    def step(k: int) -> float:
        generator = step_generator(seed, k)
        x = data.images[batch_indices(len(data), batch_size, generator)]
        lr_k = _lr(config, k, steps)
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rec = vae.decode(z).sample.float()
        loss = (rec - x).pow(2).mean()
        optimizer_step(optimizer, loss, lr_k, (params, 1.0))
        return loss.item()

    vae.decoder.train()
    with timer() as t:
        losses = train_loop(
            step,
            start,
            steps,
            lambda k: checkpoint.save(k, {"vae": vae}, optimizer, settings),
            every=200,
            desc="demo vae decoder",
        )
    model_dir = out / "model"
    vae.eval().save_pretrained(model_dir, safe_serialization=True)
    summary = {**settings, "resumed_from": start, "seconds": t["seconds"], "final_loss": final_loss(losses)}
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return model_dir
