"""MultiDiffusion and SyncDiffusion cost per model family on tiny random models (CPU), as ratios within one run.

    python benchmarks/bench_families.py          # markdown table on stdout

For SD 1.x/2.x (``syncguide.models.tiny``), SDXL, FLUX.1-dev and SD3 (``syncguide.models.tiny_families``): a
canvas one window high and six wide (window 8 latent px, stride 4: 11 windows), 20 steps, each family's own
scheduler and guidance defaults. Each measurement is a fresh process (load, one warm-up step, the timed call);
peak MB is the rise of resident memory during the timed call. The sync loss is LPIPS-VGG with a random trunk.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import torch

from bench_panorama import fresh_process, peak_rss, reset_peak_rss

FAMILIES = ("stable-diffusion", "sdxl", "flux", "sd3")
STEPS = 20
WINDOW = 8
STRIDE = 4
WIDE = 6  # windows of width


def load(family: str, directory: str):
    """The family's tiny pipeline as our SyncDiffusionPipeline (DDIM for SD and SDXL, as from_pretrained)."""
    from syncguide import SyncDiffusionPipeline
    from syncguide.models.tiny import save_tiny_pipeline
    from syncguide.models.tiny_families import save_tiny_family

    path = save_tiny_pipeline(directory) if family == "stable-diffusion" else save_tiny_family(family, directory)
    pipe = SyncDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_one(config: dict) -> dict:
    """Time one generation in this process; seconds and peak extra memory in MB."""
    from syncguide.guidance.perceptual import lpips_vgg

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load(config["family"], tmp)
        scale = pipe.backbone.vae_scale
        kwargs = {"window": WINDOW, "stride": STRIDE, "sync_weight": config["sync_weight"], "output_type": "np"}
        if config["sync_weight"] > 0:
            kwargs["perceptual_loss"] = lpips_vgg(pretrained_trunk=False)
        size = {"height": WINDOW * scale, "width": WIDE * WINDOW * scale}
        pipe("warm up", num_inference_steps=1, **size, **kwargs)
        base = reset_peak_rss()
        start = time.perf_counter()
        pipe(
            "a photo of the sea",
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            **size,
            **kwargs,
        )
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": max(0.0, (peak_rss() - base) / 2**20)}


def measure(config: dict) -> dict:
    """Run :func:`run_one` in a fresh process."""
    return fresh_process(__file__, config)


def table() -> list[str]:
    from syncguide.tiling import make_windows

    windows = len(make_windows(WINDOW, WIDE * WINDOW, WINDOW, STRIDE))
    rows = [
        "| family | MD s | MD ms / window / step | SyncDiffusion s | sync / MD time | MD peak MB | sync peak MB |"
        " sync / MD peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        md = measure({"family": family, "sync_weight": 0.0})
        sync = measure({"family": family, "sync_weight": 20.0})
        per = 1000 * md["seconds"] / windows / STEPS
        rows.append(
            f"| {family} | {md['seconds']:.2f} | {per:.1f} | {sync['seconds']:.2f} | "
            f"{sync['seconds'] / md['seconds']:.2f} | {md['peak_mb']:.0f} | {sync['peak_mb']:.0f} | "
            f"{sync['peak_mb'] / max(md['peak_mb'], 1.0):.2f} |"
        )
    header = (
        f"One window high, {WIDE} wide (window {WINDOW} latent px, stride {STRIDE}: {windows} windows), {STEPS} steps:"
    )
    return [header, "", *rows]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
        return
    print("### families\n")
    print("\n".join(table()) + "\n", flush=True)


if __name__ == "__main__":
    main()
