"""Recipe: a tiny decoder for the demo VAE's latents (fast sync mode's gradient-path decoder).

Diffusers' ``AutoencoderTiny`` (the TAESD architecture) distilled from the demo VAE's decoder: inputs are the
denoiser-space latents ``vae.encode(x).latent_dist.mode() * scaling_factor`` of demo-world crops, targets are the
demo VAE's own decodings of those latents (float32, unclamped), so the tiny decoder imitates the full decoder
rather than the images. The loss is L1 + MSE; AdamW with a linear warm-up then cosine decay. The tiny decoder
has the demo VAE's downsampling factor 4 (two 2x nearest upsamplings, so three decoder stages) and
``scaling_factor`` 1, as TAESD has for SD: it takes denoiser latents as they are
(``syncguide.models.sd.vae_decode`` divides by 1). Its encoder is a minimal, untrained placeholder
(``AutoencoderTiny`` always builds one): encode with the demo VAE.

The training set is ``min(n_data, steps * batch_size)`` crops (no more than the run can see), encoded and
decoded by the demo VAE once, before the first step. Training is deterministic given ``seed`` (batch k is drawn
from ``step_generator(seed, k)``) and resumable bit for bit from ``<out>/checkpoint``.

Example::

    model_dir = train(Path("runs/tiny-decoder"), steps=1500)
    evaluate(model_dir)["psnr_vs_full"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from syncguide.demo.train.common import config_from_overrides, make_crops, optimizer_step, warmup_cosine_lr
from syncguide.training import (
    Checkpoint,
    batch_indices,
    final_loss,
    resume_step,
    step_generator,
    timer,
    train_loop,
)

__all__ = ["TinyDecoderConfig", "build_tiny_decoder", "distillation_data", "evaluate", "psnr", "train"]

SIZE = 64
LATENT_CHANNELS = 8


@dataclass(frozen=True)
class TinyDecoderConfig:
    """Architecture and optimisation settings; every field can be overridden by keyword in :func:`train`."""

    channels: int = 32
    """Width of every decoder stage (``DecoderTiny`` needs one width throughout)."""
    num_decoder_blocks: tuple[int, ...] = (2, 2, 1)
    """``AutoencoderTinyBlock``s per stage, at 1x, 2x and 4x the latent resolution (its length - 1 upsamplings)."""
    encoder_channels: int = 8
    """Width of the unused placeholder encoder (kept minimal)."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    warmup: int = 50
    weight_decay: float = 0.0
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    grad_clip: float = 1.0
    bf16: bool = True
    """Train under CPU bfloat16 autocast (weights and optimizer stay float32)."""
    checkpoint_every: int = 200
    stop_at: int | None = None
    """Stop after this many steps without exporting (a simulated interruption; the schedule still uses
    ``steps``)."""

    @classmethod
    def from_overrides(cls, **overrides: Any) -> TinyDecoderConfig:
        """The config with ``overrides`` (TypeError for unknown fields)."""
        if "num_decoder_blocks" in overrides:
            overrides = {**overrides, "num_decoder_blocks": tuple(overrides["num_decoder_blocks"])}
        return config_from_overrides(cls, "tiny decoder", overrides)


def build_tiny_decoder(config: TinyDecoderConfig | None = None, seed: int = 0) -> AutoencoderTiny:
    """A freshly initialised ``AutoencoderTiny`` for the demo latents (initialisation drawn from ``seed``, global
    RNG state untouched): 8 latent channels, ``len(num_decoder_blocks) - 1`` 2x upsamplings, scaling factor 1."""
    config = config or TinyDecoderConfig()
    stages = len(config.num_decoder_blocks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(
            in_channels=3,
            out_channels=3,
            encoder_block_out_channels=(config.encoder_channels,) * stages,
            num_encoder_blocks=(1,) * stages,
            decoder_block_out_channels=(config.channels,) * stages,
            num_decoder_blocks=config.num_decoder_blocks,
            latent_channels=LATENT_CHANNELS,
            upsample_fn="nearest",
            upsampling_scaling_factor=2,
            scaling_factor=1.0,
            shift_factor=0.0,
        )


def _vae_dir(vae_dir: Path | str | None) -> Path:
    if vae_dir is not None:
        return Path(vae_dir)
    from syncguide.demo.bundled import bundled

    return bundled("sd") / "vae"


@torch.no_grad()
def distillation_data(vae: AutoencoderKL, images: torch.Tensor, batch: int = 100) -> dict[str, torch.Tensor]:
    """Denoiser-space ``latents`` (posterior mode x ``scaling_factor``) of ``images`` and the VAE's
    ``decoded`` images of them (float32, [-1, 1] up to overshoot, unclamped)."""
    latents, decoded = [], []
    for start in range(0, len(images), batch):
        z = vae.encode(images[start : start + batch]).latent_dist.mode()
        latents.append(z * vae.config.scaling_factor)
        decoded.append(vae.decode(z).sample)
    return {"latents": torch.cat(latents), "decoded": torch.cat(decoded)}


def _lr(config: TinyDecoderConfig, k: int, steps: int) -> float:
    return warmup_cosine_lr(k, steps, config.lr, config.warmup, config.min_lr_ratio)


def train(
    out: Path,
    steps: int = 1500,
    seed: int = 0,
    batch_size: int = 16,
    n_data: int = 2000,
    resume: bool = True,
    vae_dir: Path | None = None,
    **overrides: Any,
) -> Path:
    """Distil the demo VAE's decoder (``vae_dir``, default the bundled demo SD's ``vae``) into an
    ``AutoencoderTiny`` in ``out``; export it to ``out/model`` (diffusers format, safetensors) and return that.

    Checkpoints go to ``out/checkpoint`` every ``checkpoint_every`` steps; with ``resume`` a run continues from
    there and ends bit for bit as an uninterrupted one (CheckpointMismatch if it was made with other settings).
    ``overrides`` are :class:`TinyDecoderConfig` fields. With ``stop_at`` the run stops early and returns
    ``out/checkpoint`` instead.
    """
    config = TinyDecoderConfig.from_overrides(**overrides)
    out = Path(out)
    vae_dir = _vae_dir(vae_dir)
    model = build_tiny_decoder(config, seed)
    model.encoder.requires_grad_(False)
    params = list(model.decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n_data = min(n_data, steps * batch_size)
    architecture = {k: v for k, v in asdict(config).items() if k not in ("checkpoint_every", "stop_at")}
    settings = json.loads(
        json.dumps(
            {
                "vae": str(vae_dir),
                "steps": steps,
                "seed": seed,
                "batch_size": batch_size,
                "n_data": n_data,
                "config": architecture,
            }
        )
    )
    checkpoint = Checkpoint(out / "checkpoint")
    start = resume_step(checkpoint, {"tiny_decoder": model}, optimizer, settings, resume)
    end = steps if config.stop_at is None else max(start, min(steps, config.stop_at))

    vae = AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)
    with timer() as data_time:
        data = distillation_data(vae, make_crops(seed, n_data, SIZE).images)
    print(f"demo tiny decoder: {n_data} crops encoded and decoded in {data_time['seconds']:.1f} s", flush=True)

    def step(k: int) -> float:
        generator = step_generator(seed, k)
        rows = batch_indices(n_data, batch_size, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            pred = model.decode(data["latents"][rows]).sample.float()
        diff = pred - data["decoded"][rows]
        loss = config.l1_weight * diff.abs().mean() + config.mse_weight * diff.pow(2).mean()
        optimizer_step(optimizer, loss, _lr(config, k, steps), (params, config.grad_clip))
        return loss.item()

    def save(k: int) -> None:
        checkpoint.save(k, {"tiny_decoder": model}, optimizer, settings)

    model.decoder.train()
    with timer() as t:
        losses = (
            train_loop(step, start, end, save, every=config.checkpoint_every, desc="demo tiny decoder")
            if start < end
            else []
        )
    if end < steps:
        return checkpoint.directory
    model.eval()
    model_dir = out / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    summary = {
        **settings,
        "resumed_from": start,
        "seconds": t["seconds"],
        "data_seconds": data_time["seconds"],
        "final_loss": final_loss(losses),
    }
    (out / "train.json").write_text(json.dumps(summary, indent=2))
    return model_dir


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, float64) of image batches in [-1, 1], each clamped and mapped to [0, 1] first."""
    a01, b01 = ((a + 1) / 2).clamp(0, 1), ((b + 1) / 2).clamp(0, 1)
    mse = (a01 - b01).pow(2).mean(dim=(1, 2, 3)).double()
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


@torch.no_grad()
def evaluate(
    model_dir: Path, vae_dir: Path | None = None, seed: int = 777, n: int = 1000, batch: int = 100
) -> dict[str, float]:
    """The tiny decoder in ``model_dir`` against the full demo decoder on ``n`` fresh crops (seed ``seed``, not a
    training seed): mean per-image PSNR (dB) of the tiny decoding vs the full decoding (``psnr_vs_full``, with
    its std and minimum), and of each vs the original crops (``psnr_tiny_vs_original``,
    ``psnr_full_vs_original``). Both decode the same latents (the demo VAE's posterior modes)."""
    tiny = AutoencoderTiny.from_pretrained(model_dir).eval()
    vae = AutoencoderKL.from_pretrained(_vae_dir(vae_dir)).eval()
    images = make_crops(seed, n, SIZE).images
    data = distillation_data(vae, images, batch)
    fast = torch.cat(
        [tiny.decode(data["latents"][s : s + batch] / tiny.config.scaling_factor).sample for s in range(0, n, batch)]
    )
    vs_full = psnr(fast, data["decoded"])
    return {
        "psnr_vs_full": vs_full.mean().item(),
        "psnr_vs_full_std": vs_full.std().item() if n > 1 else 0.0,
        "psnr_vs_full_min": vs_full.min().item(),
        "psnr_tiny_vs_original": psnr(fast, images).mean().item(),
        "psnr_full_vs_original": psnr(data["decoded"], images).mean().item(),
        "n": n,
        "seed": seed,
    }
