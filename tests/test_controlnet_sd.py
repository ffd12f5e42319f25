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
from syncguide.layout import Layout, Region

PROMPT = "a photo of mountains at sunset"


def noise(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))


def control_image(height: int, width: int, seed: int = 1) -> PIL.Image.Image:
    """Random colours in 8 px blocks: structure a ControlNet sees (per-pixel noise averages out in its
    conditioning embedding, so two noise images would steer it alike)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return PIL.Image.fromarray(blocks.repeat(8, 0).repeat(8, 1))


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


def test_a_layout_takes_the_controlnet_row_by_row(pipe, controlled) -> None:
    """Each (prompt, window) row of a layout reads its window's crop: one region covering the canvas is the
    panorama of its prompt with the same control image, bit for bit; scale 0 is the layout without ControlNet."""
    latents, image = noise(64, 192), control_image(64, 192)
    snow = "a photo of snow mountains at night"
    layout = Layout(PROMPT, (Region(snow, box=(0, 0, 1, 1)),))
    common = dict(height=64, width=192, num_inference_steps=3, stride=4, output_type="latent", sync_weight=0.0)
    common["bootstrap_fraction"] = 0.0  # bootstrapping draws random colours: no generator here
    panorama = controlled(snow, latents=latents.clone(), control_image=image, **common).images
    assert torch.equal(
        controlled.layout(layout, latents=latents.clone(), control_image=image, **common).images, panorama
    )
    half = Layout(PROMPT, (Region(snow, box=(0, 0, 0.5, 1)),))
    plain = pipe.layout(half, latents=latents.clone(), **common).images
    zero = controlled.layout(
        half, latents=latents.clone(), control_image=image, controlnet_conditioning_scale=0.0, **common
    )
    assert torch.equal(zero.images, plain)
    assert not torch.allclose(
        controlled.layout(half, latents=latents.clone(), control_image=image, **common).images, plain
    )


def test_semantic_guidance_composes_with_the_controlnet(pipe, controlled) -> None:
    """SDG's gradient acts on the controlled prediction: with scale 0 it is SDG alone, bit for bit; with the
    ControlNet it still brightens the image."""
    from syncguide.guidance.semantic import Guidance

    class Brightness(Guidance):
        def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3))

    latents, image = noise(64, 192), control_image(64, 192)
    args = dict(height=64, width=192, num_inference_steps=3, stride=4, sync_weight=0.0, output_type="pt")

    def go(which, guidance, **kwargs):
        return which(PROMPT, latents=latents.clone(), semantic_guidance=guidance, **args, **kwargs).images

    alone = go(pipe, Brightness(weight=3000.0))
    assert torch.equal(
        go(controlled, Brightness(weight=3000.0), control_image=image, controlnet_conditioning_scale=0.0), alone
    )
    controlled_plain = go(controlled, None, control_image=image)
    assert go(controlled, Brightness(weight=3000.0), control_image=image).mean() > controlled_plain.mean() + 0.01


def test_in_360_degree_mode_the_crops_wrap_and_rolling_noise_and_control_rolls_the_result(
    controlled, controlnet, monkeypatch
) -> None:
    """Every window's ControlNet call reads its crop of the control image, the windows past the right edge wrap
    to the left one; and circular MultiDiffusion stays equivariant under a roll by a stride (noise by 8 latent
    columns, control image by 64 px: the result rolls by 8 columns)."""
    latents, image = noise(64, 256), control_image(64, 256)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    seen = []
    forward = controlnet.forward

    def recording(*args, **kwargs):
        seen.append(kwargs["controlnet_cond"].chunk(2)[1])  # CFG: the conditional half
        return forward(*args, **kwargs)

    monkeypatch.setattr(controlnet, "forward", recording)
    common = dict(circular_padding=True, stride=8, view_batch_size=1)
    base = run(controlled, latents, control_image=pixels, **common)
    lefts = [0, 8, 16, 24]  # latent columns: 4 windows of 8 every 8 on a 32-column ring, the last one wrapping
    assert len(seen) == 3 * len(lefts)
    for crop, left in zip(seen, lefts * 3, strict=True):
        torch.testing.assert_close(crop, pixels.roll(-8 * left, -1)[..., :64], rtol=0, atol=0)
    monkeypatch.setattr(controlnet, "forward", forward)
    rolled = run(controlled, latents.roll(8, -1), control_image=pixels.roll(64, -1), **common)
    torch.testing.assert_close(rolled, base.roll(8, -1), rtol=1e-4, atol=1e-5)


def test_save_pretrained_keeps_the_controlnet_or_its_absence(pipe, controlled, tmp_path) -> None:
    controlled.save_pretrained(tmp_path / "with")
    pipe.save_pretrained(tmp_path / "without")
    again = SyncDiffusionPipeline.from_pretrained(tmp_path / "with")
    again.set_progress_bar_config(disable=True)
    latents, image = noise(64, 128), control_image(64, 128)
    torch.testing.assert_close(run(again, latents, control_image=image), run(controlled, latents, control_image=image))
    assert SyncDiffusionPipeline.from_pretrained(tmp_path / "without").controlnet is None  # not [None, None]


def test_guess_mode_equals_diffusers_guess_mode(pipe, controlled, controlnet) -> None:
    """diffusers' ``guess_mode``: the ControlNet reads the prompt's half of CFG only, its residuals scaled down
    towards the shallow blocks; one window equals ``StableDiffusionControlNetPipeline(guess_mode=True)``."""
    parts = {k: v for k, v in pipe.components.items() if k != "controlnet"}
    theirs = StableDiffusionControlNetPipeline(
        **parts, controlnet=controlnet, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    theirs.set_progress_bar_config(disable=True)
    latents, image = noise(64, 64), control_image(64, 64)
    expected = theirs(
        PROMPT,
        image=image,
        height=64,
        width=64,
        num_inference_steps=3,
        latents=latents.clone(),
        output_type="latent",
        guess_mode=True,
    ).images
    ours = run(controlled, latents, control_image=image, guess_mode=True)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, run(controlled, latents, control_image=image), atol=1e-3)
    with pytest.raises(SettingError) as error:
        run(controlled, latents, control_image=image, guess_mode="yes")
    assert error.value.setting == "guess_mode"
