"""A plain, independent MultiDiffusion loop (one window at a time, one scheduler copy per window).

Written from the paper, sharing no code with syncguide's sampler, to cross-check it.
"""

from __future__ import annotations

import copy

import torch


def views(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    tops = list(range(0, height - window + 1, stride))
    lefts = list(range(0, width - window + 1, stride))
    assert tops[-1] + window == height and lefts[-1] + window == width, "reference needs exact tilings"
    return [(top, left) for top in tops for left in lefts]


@torch.no_grad()
def multidiffusion(
    pipe, prompt: str, latents: torch.Tensor, steps: int, cfg: float, stride: int, scheduler=None, control=None
):
    """Final latents of MultiDiffusion with a separate copy of ``scheduler`` for every window; ``control``
    ``(controlnet, image (1, 3, 8h, 8w) in [0, 1], scale)``: each window's ControlNet sees its own crop."""
    unet, window = pipe.unet, pipe.unet.config.sample_size
    ids = pipe.tokenizer(
        [prompt, ""], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    cond, uncond = pipe.text_encoder(ids)[0].chunk(2)
    scheduler = copy.deepcopy(scheduler or pipe.scheduler)
    scheduler.set_timesteps(steps)
    grid = views(latents.shape[-2], latents.shape[-1], window, stride)
    schedulers = [copy.deepcopy(scheduler) for _ in grid]
    for t in scheduler.timesteps:
        value, count = torch.zeros_like(latents), torch.zeros_like(latents)
        for (top, left), sched in zip(grid, schedulers, strict=True):
            x = latents[:, :, top : top + window, left : left + window]
            inp = sched.scale_model_input(x, t)
            extra = {}
            if control is not None:
                net, image, scale = control
                crop = image[:, :, top * 8 : (top + window) * 8, left * 8 : (left + window) * 8]
                down, mid = net(
                    torch.cat([inp, inp]),
                    t,
                    encoder_hidden_states=torch.cat([uncond, cond]),
                    controlnet_cond=torch.cat([crop, crop]),
                    conditioning_scale=scale,
                    return_dict=False,
                )
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            out = unet(torch.cat([inp, inp]), t, encoder_hidden_states=torch.cat([uncond, cond]), **extra).sample
            out_uncond, out_cond = out.chunk(2)
            eps = out_uncond + cfg * (out_cond - out_uncond)
            x = sched.step(eps, t, x).prev_sample
            value[:, :, top : top + window, left : left + window] += x
            count[:, :, top : top + window, left : left + window] += 1
        latents = value / count
    return latents


@torch.no_grad()
def region_multidiffusion(
    pipe, prompts: list[str], masks: torch.Tensor, latents: torch.Tensor, steps: int, cfg: float, stride: int
):
    """Final latents of MultiDiffusion's region mode without bootstrapping: for every prompt (``masks`` ``(P, h, w)``
    0/1, background first) and window its mask touches, one denoising step; fusion weighted by the masks."""
    unet, window = pipe.unet, pipe.unet.config.sample_size
    ids = pipe.tokenizer(
        [*prompts, ""], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    embeds = pipe.text_encoder(ids)[0]
    uncond = embeds[-1:]
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps)
    grid = views(latents.shape[-2], latents.shape[-1], window, stride)
    for t in scheduler.timesteps:
        value, count = torch.zeros_like(latents), torch.zeros_like(latents)
        for k in range(len(prompts)):
            for top, left in grid:
                mask = masks[k, top : top + window, left : left + window]
                if not mask.any():
                    continue
                x = latents[:, :, top : top + window, left : left + window]
                out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, embeds[k : k + 1]])).sample
                out_uncond, out_cond = out.chunk(2)
                x = scheduler.step(out_uncond + cfg * (out_cond - out_uncond), t, x).prev_sample
                value[:, :, top : top + window, left : left + window] += x * mask
                count[:, :, top : top + window, left : left + window] += mask
        latents = value / count
    return latents
