"""Recipe: a ControlNet for the demo world's Stable Diffusion, conditioned on edge maps of the world's crops.

As ControlNet (Zhang et al., "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023): the demo
SD pipeline (VAE, text encoder, UNet) stays frozen; a ``ControlNetModel`` copied from its UNet
(``ControlNetModel.from_unet``: the encoder and middle block, zero convolutions on every output) learns the
denoising loss on VAE latents of 64 x 64 crops, reading each crop's edge map (:func:`edge_map`, white edges on
black as a Canny map) and its caption; half the captions are empty (the paper drops 50%) so that it must learn to
read the edges. The same offset noise as the demo UNet's training.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, DDPMScheduler

from syncguide.demo.train.common import make_crops, optimizer_step
from syncguide.demo.train.sd import SCHEDULE, encode_data, noisy_batch
from syncguide.training import Checkpoint, resume_step, step_generator, train_loop

EDGE_THRESHOLD = 0.04
"""Sobel gradient magnitude of the luminance (images in [0, 1], kernel / 8) above which a pixel is an edge."""
EMPTY_CAPTION_RATE = 0.5
CONDITIONING_CHANNELS = (16, 32, 64)  # the conditioning embedding: two stride-2 levels, as the demo VAE's 4x


def edge_map(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Edges of images ``(n, 3, H, W)`` in [0, 1]: 1 where the Sobel gradient magnitude of the luminance exceeds
    ``threshold``, else 0, as a white-on-black RGB map ``(n, 3, H, W)`` in {0, 1} (what OpenCV Canny gives)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    gray = F.pad((images * weights).sum(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=images.dtype, device=images.device) / 8
    gx, gy = F.conv2d(gray, sobel.view(1, 1, 3, 3)), F.conv2d(gray, sobel.t().reshape(1, 1, 3, 3))
    return ((gx.square() + gy.square()).sqrt() > threshold).to(images.dtype).expand(-1, 3, -1, -1).contiguous()


def train(
    out: Path,
    model_dir: Path | None = None,
    steps: int = 1500,
    seed: int = 0,
    batch_size: int = 32,
    n_data: int = 4000,
    lr: float = 2e-4,
    resume: bool = True,
    offset_noise: float = 0.2,
) -> Path:
    """Train the ControlNet of the SD pipeline in ``model_dir`` (default: the bundled demo SD); export it in
    diffusers format (safetensors) to ``out/model`` (returned). Deterministic and resumable (``out/checkpoint``)."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    if model_dir is None:
        from syncguide.demo.bundled import bundled

        model_dir = bundled("sd")
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.eval().requires_grad_(False)
    data = encode_data(pipe.vae, pipe.text_encoder, pipe.tokenizer, seed, n_data)
    edges = edge_map((make_crops(seed, n_data).images + 1) / 2)
    net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
    modules = {"controlnet": net}
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    noise_schedule = DDPMScheduler(**SCHEDULE)
    checkpoint = Checkpoint(out / "checkpoint")
    settings = {"model": str(model_dir), "seed": seed, "batch_size": batch_size, "lr": lr, "n_data": n_data}
    settings["offset_noise"] = offset_noise
    start = resume_step(checkpoint, modules, optimizer, settings, resume)

    def step(k: int) -> float:
        batch = noisy_batch(data, batch_size, step_generator(seed, k), noise_schedule, offset_noise, EMPTY_CAPTION_RATE)
        noisy, t, cond = batch["noisy"], batch["t"], batch["cond"]
        down, mid = net(noisy, t, encoder_hidden_states=cond, controlnet_cond=edges[batch["rows"]], return_dict=False)
        residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        loss = F.mse_loss(pipe.unet(noisy, t, encoder_hidden_states=cond, **residuals).sample, batch["noise"])
        optimizer_step(optimizer, loss)
        return loss.item()

    net.train()
    train_loop(step, start, steps, lambda k: checkpoint.save(k, modules, optimizer, settings), desc="demo controlnet")
    net.eval().save_pretrained(out / "model", safe_serialization=True)
    return out / "model"


@torch.no_grad()
def evaluate(
    controlnet_dir: Path, model_dir: Path | None = None, n: int = 32, steps: int = 25, seed: int = 777
) -> dict:
    """How closely generated images follow the control edges: on ``n`` fresh crops (``seed``), each crop's edge map
    and caption generate a 64 x 64 image (DDIM ``steps``, CFG 7.5, the same noise with and without the
    ControlNet); the F1 score of the generated image's edges against the control edges, each allowed one pixel of
    slack (3 x 3 dilation). Returns ``with``, ``without`` (the plain model: the chance level of these captions)
    and ``shuffled`` (the ControlNet run scored against another crop's edges)."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    if model_dir is None:
        from syncguide.demo.bundled import bundled

        model_dir = bundled("sd")
    plain = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    net = ControlNetModel.from_pretrained(controlnet_dir)
    controlled = StableDiffusionControlNetPipeline(**plain.components, controlnet=net)
    crops = make_crops(seed, n)
    edges = edge_map((crops.images + 1) / 2)
    common = {"num_inference_steps": steps, "guidance_scale": 7.5, "output_type": "pt"}
    made = {"with": [], "without": []}
    for i, caption in enumerate(crops.captions):
        for name, pipe in (("with", controlled), ("without", plain)):
            pipe.set_progress_bar_config(disable=True)
            extra = {"image": edges[i : i + 1]} if name == "with" else {}
            generator = torch.Generator().manual_seed(seed + i)
            made[name].append(pipe(caption, generator=generator, **common, **extra).images)
    scores = {name: edge_f1(edge_map(torch.cat(images)), edges) for name, images in made.items()}
    scores["shuffled"] = edge_f1(edge_map(torch.cat(made["with"])), edges.roll(1, 0))
    return {**scores, "n": n, "steps": steps}


def edge_f1(found: torch.Tensor, wanted: torch.Tensor) -> float:
    """Mean F1 of edge maps ``found`` against ``wanted`` ``(n, 3, H, W)`` in {0, 1}, one pixel of slack."""

    def grow(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x[:, :1], 3, stride=1, padding=1)

    f, w = found[:, :1], wanted[:, :1]
    precision = (f * grow(w)).sum((1, 2, 3)) / f.sum((1, 2, 3)).clamp_min(1)
    recall = (w * grow(f)).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1)
    return (2 * precision * recall / (precision + recall).clamp_min(1e-8)).mean().item()
