"""Fast vs exact SyncDiffusion vs MultiDiffusion: time and peak memory, as ratios within one run (CPU).

    python benchmarks/bench_fast.py tiny-sd tiny-sdxl tiny-flux demo sd2-base   # markdown tables on stdout

Models: the tiny random SD, SDXL and FLUX.1 components (``syncguide.models.tiny``, ``.tiny_families``), the
bundled demo model (with its tiny decoder ``demo-tiny-decoder`` in fast mode when bundled), and the real SD
2-base architecture (the published UNet / VAE / OpenCLIP-H text-encoder configs with random weights, built from
config: no download) with a TAESD-architecture ``AutoencoderTiny`` (random) as fast mode's decoder. Tiny models
without a trained tiny decoder use a random TAESD-shaped one (the cost is what matters). Each row is a fresh
process: build, one warm-up step, the timed call; peak MB is the rise of resident memory during it. The sync
loss is LPIPS-VGG with a random trunk. "first 20%" syncs the first fifth of the steps (the paper: 10 of 50).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import torch

from architectures import SD2_UNET, sd_vae
from bench_panorama import fresh_process, peak_rss, reset_peak_rss

# model -> (steps, canvas in windows wide, stride as a fraction of the window, rows per call)
PLANS = {
    "tiny-sd": (50, 6, 4),
    "tiny-sdxl": (50, 6, 4),
    "tiny-flux": (50, 6, 4),
    "demo": (50, 6, 2),
    "sd2-base": (5, 1.25, 4),  # two 512 px windows, 5 steps: minutes per row on a CPU
}
METHODS = {
    "MultiDiffusion": {"sync_weight": 0.0},
    "exact, every step": {"sync_weight": 20.0},
    "fast, every step": {"sync_weight": 20.0, "sync_mode": "fast"},
    "exact, first 20%": {"sync_weight": 20.0, "steps_fraction": 0.2},
    "fast, first 20%": {"sync_weight": 20.0, "sync_mode": "fast", "steps_fraction": 0.2},
}


def taesd(channels: int = 4, scale: int = 8, full: bool = True):
    """A random AutoencoderTiny in TAESD's layout (``full``: TAESD's widths, 64 channels, 3 blocks a level)."""
    from diffusers import AutoencoderTiny

    levels = {8: 4, 4: 3, 2: 2}[scale]
    width, blocks = (64, 3) if full else (8, 1)
    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(width,) * levels,
        decoder_block_out_channels=(width,) * levels,
        num_encoder_blocks=(1,) + (blocks,) * (levels - 1),
        num_decoder_blocks=(blocks,) * (levels - 1) + (1,),
        latent_channels=channels,
    ).eval()


def sd2_base(directory: str):
    """SD 2-base's published architecture with random weights (UNet 865 M, VAE 84 M, text encoder 340 M)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from syncguide import SyncDiffusionPipeline
    from syncguide.models.tiny import TINY_WORDS
    from syncguide.models.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(TINY_WORDS, directory, max_length=77)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=max(len(tokenizer), 49408),
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(**SD2_UNET)
    vae = AutoencoderKL(**sd_vae(4), sample_size=512)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    parts = {"vae": vae, "text_encoder": text, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}
    return SyncDiffusionPipeline(**{k: v.eval() if hasattr(v, "eval") else v for k, v in parts.items()}), taesd()


def load(model: str, directory: str):
    """``(pipeline, fast mode's decoder)`` of ``model``."""
    from syncguide import SyncDiffusionPipeline

    if model == "sd2-base":
        return sd2_base(directory)
    if model == "demo":
        from syncguide import registry

        pipe = SyncDiffusionPipeline.from_pretrained(registry.lookup("model", "demo")())
        try:
            from diffusers import AutoencoderTiny

            decoder = AutoencoderTiny.from_pretrained(registry.lookup("model", "demo-tiny-decoder")())
        except (ValueError, OSError):  # not bundled yet: a random TAESD-shaped one of the same cost
            decoder = taesd(pipe.backbone.latent_channels, pipe.backbone.vae_scale, full=False)
        return pipe, decoder
    from syncguide.models.tiny import save_tiny_pipeline
    from syncguide.models.tiny_families import save_tiny_family

    family = model.removeprefix("tiny-")
    path = save_tiny_pipeline(directory) if family == "sd" else save_tiny_family(family, directory)
    pipe = SyncDiffusionPipeline.from_pretrained(path)
    backbone = pipe.backbone
    return pipe, taesd(backbone.latent_channels, backbone.vae_scale, full=False)


def run_one(config: dict) -> dict:
    """Time one generation in this process; seconds and peak extra memory in MB."""
    from syncguide.guidance.perceptual import lpips_vgg

    torch.set_num_threads(2)
    steps, wide, fraction = PLANS[config["model"]]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(False):
        pipe, decoder = load(config["model"], tmp)
        pipe.set_progress_bar_config(disable=True)
        backbone = pipe.backbone
        window = backbone.window
        size = {"height": window * backbone.vae_scale, "width": round(wide * window) * backbone.vae_scale}
        method = dict(config["method"])
        kwargs = {"stride": max(1, window // fraction), "output_type": "np", "sync_weight": method["sync_weight"]}
        if method.get("sync_mode") == "fast":
            kwargs.update(sync_mode="fast", sync_decoder=decoder)
        if "steps_fraction" in method:
            kwargs["sync_steps"] = max(1, round(method["steps_fraction"] * steps))
        if kwargs["sync_weight"] > 0:
            kwargs["perceptual_loss"] = lpips_vgg(pretrained_trunk=False)
        if config["model"] != "sd2-base":
            pipe("warm up", num_inference_steps=1, **size, **kwargs)
        base = reset_peak_rss()
        start = time.perf_counter()
        pipe(
            "a photo of the sea",
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            **size,
            **kwargs,
        )
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": max(0.0, (peak_rss() - base) / 2**20)}


def measure(config: dict) -> dict:
    """Run :func:`run_one` in a fresh process."""
    return fresh_process(__file__, config)


def table(model: str) -> list[str]:
    steps, wide, fraction = PLANS[model]
    rows = ["| method | s | time / MD | peak MB | peak / MD |", "|---|---|---|---|---|"]
    results = {name: measure({"model": model, "method": method}) for name, method in METHODS.items()}
    md = results["MultiDiffusion"]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['seconds']:.2f} | {r['seconds'] / md['seconds']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['peak_mb'] / max(md['peak_mb'], 1.0):.2f} |"
        )
    return [f"{model}: {wide} windows wide, stride window/{fraction}, {steps} steps:", "", *rows]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
        return
    for model in sys.argv[1:] or list(PLANS):
        print(f"### fast-{model}\n")
        print("\n".join(table(model)) + "\n", flush=True)


if __name__ == "__main__":
    main()
