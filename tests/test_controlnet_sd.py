"""ControlNet panoramas on Stable Diffusion 1.x/2.x (issue 17's first family): one window equals diffusers'
``StableDiffusionControlNetPipeline``; several windows equal an independent per-window reference loop; scale 0
is no ControlNet, bit for bit; exact sync differentiates through the ControlNet, fast sync does not; bad input
is a SettingError naming the argument."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

from reference import multidiffusion
from syncguide import SyncDiffusionPipeline
from syncguide.errors import SettingError

PROMPT = "a photo of mountains at sunset"


def noise(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))


def control_image(height: int, width: int, seed: int = 1) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


@pytest.fixture(scope="module")
def controlnet(pipe) -> ControlNetModel:
    """A tiny random ControlNet copied from the tiny UNet, its zero convolutions made random (as if trained: with
    diffusers' zero initialisation every residual would be 0 and no test below could fail)."""
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 4, 8, 8))
    zero = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for module in zero:
            for p in module.parameters():
                p.normal_(0, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def controlled(pipe, controlnet) -> SyncDiffusionPipeline:
    ours = SyncDiffusionPipeline(**{**pipe.components, "controlnet": controlnet})
    ours.set_progress_bar_config(disable=True)
    return ours


def run(pipe, latents, **kwargs) -> torch.Tensor:
    args = dict(num_inference_steps=3, stride=4, output_type="latent", sync_weight=0.0)
    args.update(kwargs)
    height, width = latents.shape[-2] * 8, latents.shape[-1] * 8
    return pipe(PROMPT, height=height, width=width, latents=latents.clone(), **args).images


def test_one_window_equals_diffusers_controlnet_pipeline(pipe, controlled, controlnet) -> None:
    parts = {k: v for k, v in pipe.components.items() if k != "controlnet"}
    theirs = StableDiffusionControlNetPipeline(
        **parts, controlnet=controlnet, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    theirs.set_progress_bar_config(disable=True)
    latents, image = noise(64, 64), control_image(64, 64)
    expected = theirs(
        PROMPT, image=image, height=64, width=64, num_inference_steps=3, latents=latents.clone(), output_type="latent"
    ).images
    ours = run(controlled, latents, control_image=image)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, run(pipe, latents), atol=1e-3)  # the ControlNet does change the result


def test_several_windows_equal_a_per_window_reference_loop(controlled, controlnet) -> None:
    latents, image = noise(64, 192), control_image(64, 192)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    expected = multidiffusion(controlled, PROMPT, latents.clone(), 3, 7.5, 4, control=(controlnet, tensor, 0.7))
    ours = run(controlled, latents, control_image=image, controlnet_conditioning_scale=0.7)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_scale_zero_or_no_active_step_is_no_controlnet_bit_for_bit(pipe, controlled) -> None:
    latents, image = noise(64, 192), control_image(64, 192)
    plain = run(pipe, latents)
    assert torch.equal(run(controlled, latents, control_image=image, controlnet_conditioning_scale=0.0), plain)
    late = run(controlled, latents, control_image=image, control_guidance_start=0.5, control_guidance_end=0.5)
    assert torch.equal(late, plain)  # 3 steps: none lies within [0.5, 0.5]
    half = run(controlled, latents, control_image=image, control_guidance_end=0.4)  # the first step only
    assert not torch.equal(half, plain) and not torch.allclose(half, run(controlled, latents, control_image=image))


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_exact_sync_differentiates_through_the_controlnet_fast_sync_does_not(
    controlled, controlnet, random_lpips, monkeypatch, mode: str
) -> None:
    grads = []
    forward = controlnet.forward

    def recording(*args, **kwargs):
        grads.append(torch.is_grad_enabled())
        return forward(*args, **kwargs)

    monkeypatch.setattr(controlnet, "forward", recording)
    latents, image = noise(64, 128), control_image(64, 128)
    synced = run(
        controlled, latents, control_image=image, sync_weight=20.0, sync_mode=mode, perceptual_loss=random_lpips
    )
    assert any(grads) == (mode == "exact")
    assert not torch.allclose(synced, run(controlled, latents, control_image=image), atol=1e-4)  # sync acted


def test_bad_control_arguments_name_the_argument(pipe, controlled) -> None:
    latents, image = noise(64, 192), control_image(64, 192)
    cases = [
        (pipe, {"control_image": image}, "control_image", "needs a pipeline with a controlnet"),
        (controlled, {}, "control_image", "is required"),
        (controlled, {"control_image": control_image(64, 64)}, "control_image", "may differ by 5%"),
        (controlled, {"control_image": image, "controlnet_conditioning_scale": [1.0, 2.0]},
         "controlnet_conditioning_scale", "list of 1"),
        (controlled, {"control_image": image, "control_guidance_end": float("nan")}, "control_guidance_end", "number"),
    ]  # fmt: skip
    for which, kwargs, setting, rule in cases:
        with pytest.raises(SettingError) as error:
            run(which, latents, **kwargs)
        assert error.value.setting == setting and rule in error.value.rule


def test_loaded_with_a_controlnet_and_components_stay_diffusers_own(tiny_dir, controlnet) -> None:
    from diffusers import StableDiffusionPipeline

    loaded = SyncDiffusionPipeline.from_pretrained(tiny_dir, controlnet=controlnet)
    assert loaded.controlnet is controlnet
    assert "controlnet" not in loaded.components  # an optional parameter: diffusers' pipelines take the rest
    plain = StableDiffusionPipeline(**loaded.components, safety_checker=None, feature_extractor=None)
    assert plain.unet is loaded.unet
