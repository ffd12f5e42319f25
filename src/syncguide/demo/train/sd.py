"""Recipe: the demo world's tiny Stable Diffusion pipeline (text-conditional latent diffusion).

The VAE is the trained demo VAE (frozen). A small CLIP text encoder (tokenizer built from the world's vocabulary)
and the cross-attention UNet are trained together here on VAE latents of 64 x 64 crops and their captions, with
about 10% empty captions so that classifier-free guidance and unconditional sampling work.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from syncguide.demo.train.common import make_crops
from syncguide.demo.world import SEASONS, TIMES, VOCABULARY, caption
from syncguide.models.tokenizer import build_tokenizer
from syncguide.training import Checkpoint, batch_indices, step_generator, train_loop

SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
UNET = {
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
EMPTY_CAPTION_RATE = 0.1


def make_unet(sample_size: int, cross_attention_dim: int, **overrides: Any) -> UNet2DConditionModel:
    """The demo UNet: 4 latent channels, cross-attention to the text encoder's hidden states."""
    config = {**UNET, **overrides}
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, cross_attention_dim=cross_attention_dim, **config
    )


TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
MAX_TOKENS = 24


def make_text_encoder(tokenizer: CLIPTokenizer, **overrides: Any) -> CLIPTextModel:
    """A small CLIP text encoder for the world's vocabulary, trained jointly with the UNet."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TEXT, **overrides},
    )
    return CLIPTextModel(config)


@torch.no_grad()
def encode_data(vae: AutoencoderKL, tokenizer: CLIPTokenizer, seed: int, n: int, batch: int = 256) -> dict:
    """Scaled latent means and stds of ``n`` crops, and their caption token ids ``(n, MAX_TOKENS)``."""
    crops = make_crops(seed, n)
    means, stds = [], []
    for start in range(0, n, batch):
        posterior = vae.encode(crops.images[start : start + batch]).latent_dist
        means.append(posterior.mean * vae.config.scaling_factor)
        stds.append(posterior.std * vae.config.scaling_factor)
    return {
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "ids": _ids(tokenizer, crops.captions),
        "empty": _ids(tokenizer, [""])[0],
    }


def _ids(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def train(
    out: Path,
    vae_dir: Path,
    steps: int = 3000,
    seed: int = 0,
    batch_size: int = 64,
    n_data: int = 20000,
    lr: float = 3e-4,
    resume: bool = True,
    text_overrides: dict | None = None,
    **unet_overrides: Any,
) -> Path:
    """Train the UNet and text encoder; export a ``StableDiffusionPipeline`` to ``out/model`` (returned)."""
    out = Path(out)
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)
    tokenizer = build_tokenizer(VOCABULARY, out / "tokenizer", max_length=MAX_TOKENS)
    data = encode_data(vae, tokenizer, seed, n_data)
    text = make_text_encoder(tokenizer, **(text_overrides or {}))
    unet = make_unet(data["mean"].shape[-1], text.config.hidden_size, **unet_overrides)
    modules = {"unet": unet, "text_encoder": text}
    optimizer = torch.optim.AdamW([*unet.parameters(), *text.parameters()], lr=lr, weight_decay=0.0)
    noise_schedule = DDPMScheduler(**SCHEDULE)
    checkpoint = Checkpoint(out / "checkpoint")
    start = checkpoint.load(modules, optimizer)["step"] if resume and checkpoint.exists() else 0

    def step(k: int) -> float:
        g = step_generator(seed, k)
        rows = batch_indices(len(data["mean"]), batch_size, g)
        mean, std = data["mean"][rows], data["std"][rows]
        latents = mean + std * torch.randn(mean.shape, generator=g)
        empty = torch.rand(batch_size, generator=g) < EMPTY_CAPTION_RATE
        ids = torch.where(empty[:, None], data["empty"], data["ids"][rows])
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch_size,), generator=g)
        cond = text(ids)[0]
        pred = unet(noise_schedule.add_noise(latents, noise, t), t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    unet.train()
    text.train()
    train_loop(step, start, steps, lambda k: checkpoint.save(k, modules, optimizer), desc="demo sd")
    return export(out / "model", vae, text.eval(), tokenizer, unet.eval())


def export(
    directory: Path, vae: AutoencoderKL, text: CLIPTextModel, tokenizer: CLIPTokenizer, unet: UNet2DConditionModel
) -> Path:
    """Save the pipeline in diffusers format (safetensors) with a DDIM scheduler."""
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return Path(directory)


@torch.no_grad()
def evaluate(model_dir: Path, judge_dir: Path, n: int = 8, steps: int = 25, cfg: float = 7.5, seed: int = 4242) -> dict:
    """How often the judge finds the asked time and season in samples from prompts naming both.

    For every (time, season) pair, ``n`` samples of a caption naming exactly those two attributes (fresh seeds,
    DDIM ``steps``, CFG ``cfg``). Returns match rates in [0, 1]: ``time``, ``season``, ``both``, and per prompt.
    """
    from syncguide.demo.train.judge import load_judge

    pipe = StableDiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    judge = load_judge(judge_dir)
    hits = {"time": [], "season": [], "both": []}
    per_prompt = {}
    for i, (time, season) in enumerate(itertools.product(TIMES, SEASONS)):
        prompt = caption({"time": time, "season": season}, i, names=("time", "season"))
        images = pipe(
            prompt,
            num_images_per_prompt=n,
            num_inference_steps=steps,
            guidance_scale=cfg,
            generator=torch.Generator().manual_seed(seed + i),
            output_type="pt",
        ).images
        pred = judge.predict(images * 2 - 1)
        ok_time, ok_season = pred["time"] == TIMES.index(time), pred["season"] == SEASONS.index(season)
        hits["time"].append(ok_time)
        hits["season"].append(ok_season)
        hits["both"].append(ok_time & ok_season)
        per_prompt[prompt] = (ok_time & ok_season).float().mean().item()
    rates = {key: torch.cat(value).float().mean().item() for key, value in hits.items()}
    return {**rates, "per_prompt": per_prompt, "n_per_prompt": n, "steps": steps, "cfg": cfg}
