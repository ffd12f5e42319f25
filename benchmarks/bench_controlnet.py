"""ControlNet's added cost per window per step, with MultiDiffusion, exact and fast SyncDiffusion (issue 17).

    python benchmarks/bench_controlnet.py time tiny-sd tiny-sdxl tiny-flux   # CPU timings, markdown on stdout
    python benchmarks/bench_controlnet.py flops                              # real architectures, meta device

``time``: the tiny random SD, SDXL and FLUX.1 models (``syncguide.models.tiny``, ``.tiny_families``) with a random
ControlNet of their own shape (``random_controlnet``: copied from the UNet; ``random_flux_controlnet``: one double
and one single block), each run in a fresh process (build, a one-step warm-up, the timed call), 2 threads; tiny
FLUX.1 with 16-latent windows (64 tokens).
Added cost per window per step = (with - without) / (steps x windows). ``flops``: forward FLOPs of one window's
call on the published architectures (SD 2-base's UNet and a ``ControlNetModel.from_unet`` of it; FLUX.1-dev's
transformer and an InstantX-style ``FluxControlNetModel.from_transformer`` with diffusers' default 4 double and
10 single blocks), counted by ``torch.utils.flop_counter`` on the meta device: no weights, no memory.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import torch

from architectures import FLUX_DEV, SD2_UNET
from bench_fast import load
from bench_panorama import fresh_process

STEPS, WIDE, FRACTION = 10, 6, 4  # steps; canvas windows wide; stride = window / FRACTION
WINDOWS = {"tiny-flux": 16}  # latent px; FLUX's default (FluxPipeline's 128) is 4096 tokens: minutes a row here
METHODS = {
    "MultiDiffusion": {"sync_weight": 0.0},
    "exact sync": {"sync_weight": 20.0},
    "fast sync": {"sync_weight": 20.0, "sync_mode": "fast"},
}


def _controlnet(pipe):
    from syncguide.models.tiny import random_controlnet, random_flux_controlnet

    if pipe.family == "flux":
        return random_flux_controlnet(pipe.transformer)
    return random_controlnet(pipe.unet, pipe.backbone.vae_scale)


def run_one(config: dict) -> dict:
    """Seconds of one generation in this process, and its window count."""
    import numpy as np
    import PIL.Image

    from syncguide.guidance.perceptual import lpips_vgg
    from syncguide.tiling import make_windows

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(False):
        pipe, decoder = load(config["model"], tmp)
        backbone = pipe.backbone
        window, scale = WINDOWS.get(config["model"], backbone.window), backbone.vae_scale
        height, width = window * scale, WIDE * window * scale
        kwargs = {"stride": window // FRACTION, "output_type": "np", "height": height, "width": width}
        kwargs["window"] = window
        method = METHODS[config["method"]]
        kwargs["sync_weight"] = method["sync_weight"]
        if method.get("sync_mode") == "fast":
            kwargs.update(sync_mode="fast", sync_decoder=decoder)
        if kwargs["sync_weight"] > 0:
            kwargs["perceptual_loss"] = lpips_vgg(pretrained_trunk=False)
        if config["control"]:
            cells = np.random.default_rng(0).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            kwargs["control_image"] = PIL.Image.fromarray(cells.repeat(8, 0).repeat(8, 1))
            pipe = type(pipe)(**pipe.components, controlnet=_controlnet(pipe))
        pipe.set_progress_bar_config(disable=True)
        pipe("warm up", num_inference_steps=1, **kwargs)
        start = time.perf_counter()
        pipe("a photo of the sea", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), **kwargs)
        seconds = time.perf_counter() - start
    windows = len(make_windows(window, WIDE * window, window, window // FRACTION))
    return {"seconds": seconds, "windows": windows}


def table(model: str) -> list[str]:
    rows = [
        "| method | without s | with ControlNet s | with / without | added ms per window per step |",
        "|---|---|---|---|---|",
    ]
    for name in METHODS:
        without = fresh_process(__file__, {"model": model, "method": name, "control": False})
        with_ = fresh_process(__file__, {"model": model, "method": name, "control": True})
        added = (with_["seconds"] - without["seconds"]) / (STEPS * without["windows"]) * 1000
        rows.append(
            f"| {name} | {without['seconds']:.2f} | {with_['seconds']:.2f} |"
            f" {with_['seconds'] / without['seconds']:.2f} | {added:.2f} |"
        )
    windows = without["windows"]
    return [f"{model}: {windows} windows ({WIDE} wide, stride window/{FRACTION}), {STEPS} steps:", "", *rows]


def flop_table() -> list[str]:
    from diffusers import ControlNetModel, FluxControlNetModel, FluxTransformer2DModel, UNet2DConditionModel

    from bench_parallel import flops

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD2_UNET)
        net = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        x, t, text = torch.randn(2, 4, 64, 64), torch.ones(2), torch.randn(2, 77, 1024)
        sd = (flops(unet, x, t, text), flops(net, x, t, text, torch.randn(2, 3, 512, 512), return_dict=False))
        flux = FluxTransformer2DModel(**FLUX_DEV)
        control = FluxControlNetModel.from_transformer(flux, load_weights_from_transformer=False)
        common = dict(
            hidden_states=torch.randn(1, 4096, 64),
            timestep=torch.ones(1),
            guidance=torch.ones(1),
            pooled_projections=torch.randn(1, 768),
            encoder_hidden_states=torch.randn(1, 512, 4096),
            txt_ids=torch.zeros(512, 3),
            img_ids=torch.zeros(4096, 3),
            return_dict=False,
        )
        fx = (flops(flux, **common), flops(control, controlnet_cond=torch.randn(1, 4096, 64), **common))
    rows = ["| model | denoiser TFLOP / call | ControlNet TFLOP / call | ControlNet / denoiser |", "|---|---|---|---|"]
    for name, (base, extra) in (("SD 2-base, 512 px window, CFG (2 rows)", sd), ("FLUX.1-dev, 1024 px window", fx)):
        rows.append(f"| {name} | {base / 1e12:.2f} | {extra / 1e12:.2f} | {extra / base:.2f} |")
    return rows


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
        return
    if sys.argv[1:2] == ["flops"]:
        print("\n".join(flop_table()) + "\n")
        return
    for model in sys.argv[2:] or ["tiny-sd", "tiny-sdxl", "tiny-flux"]:
        print(f"### controlnet-{model}\n")
        print("\n".join(table(model)) + "\n", flush=True)


if __name__ == "__main__":
    main()
