"""ControlNet panoramas on SDXL and FLUX.1 (issue 17): one window equals diffusers'
``StableDiffusionXLControlNetPipeline`` / ``FluxControlNetPipeline``; several windows equal an independent
per-window loop (each window's ControlNet reads its own crop); scale 0 is no ControlNet bit for bit; a second
ControlNet at scale 0 changes nothing; exact sync differentiates through the ControlNet, fast sync does not; a
ControlNet of another family is one SettingError naming ``controlnet``."""

from __future__ import annotations

import inspect

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FluxControlNetPipeline, FluxPipeline, StableDiffusionXLControlNetPipeline
from test_family_pipelines import WINDOW, _reference_multidiffusion

from syncguide import SyncDiffusionPipeline
from syncguide.errors import SettingError
from syncguide.models.tiny import random_controlnet, random_flux_controlnet

PROMPT = "a photo of the mountains at sunset"
NAMES = ("sdxl", "flux")
CFG = {"sdxl": 5.0, "flux": 3.5}
SIZE = 2 * WINDOW  # pixels of one window (the tiny VAEs downsample by 2)


def control_image(height: int, width: int, seed: int = 1) -> PIL.Image.Image:
    """Random colours in 8 px blocks: structure a ControlNet sees (per-pixel noise averages out in its
    conditioning embedding, so two noise images would steer it alike)."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return PIL.Image.fromarray(blocks.repeat(8, 0).repeat(8, 1))


def as_tensor(image: PIL.Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def _point_posterior(vae) -> None:
    """Make the VAE's posterior (nearly) a point: its log-variance channels -30 (std 3e-7), so diffusers' sampled
    control latents equal the mode ours takes to within 1e-6."""
    conv = vae.encoder.conv_out
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[half:] = 0
        conv.bias[half:] = -60.0


@pytest.fixture(scope="module")
def families(sdxl_dir, flux_dir) -> dict[str, tuple[SyncDiffusionPipeline, torch.nn.Module, torch.nn.Module]]:
    """Each family's pipeline, two random ControlNets for it, and the pipeline with the first."""
    loaded = {}
    for name, directory in (("sdxl", sdxl_dir), ("flux", flux_dir)):
        pipe = SyncDiffusionPipeline.from_pretrained(directory)
        pipe.set_progress_bar_config(disable=True)
        if name == "flux":
            _point_posterior(pipe.vae)
            nets = [random_flux_controlnet(pipe.transformer, seed=s) for s in (0, 1)]
        else:
            nets = [random_controlnet(pipe.unet, 2, seed=s) for s in (0, 1)]
        loaded[name] = (pipe, *nets)
    return loaded


def controlled(pipe, *nets) -> SyncDiffusionPipeline:
    ours = type(pipe)(**pipe.components, controlnet=list(nets) if len(nets) > 1 else nets[0])
    ours.set_progress_bar_config(disable=True)
    return ours


def noise(width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, WINDOW, width // 2, generator=torch.Generator().manual_seed(seed))


def run(pipe, latents: torch.Tensor, **kwargs) -> torch.Tensor:
    args = dict(window=WINDOW, stride=4, num_inference_steps=3, output_type="latent", sync_weight=0.0)
    if pipe.family == "flux":
        args["max_sequence_length"] = 24
    args.update(kwargs)
    scale = pipe.backbone.vae_scale
    height, width = latents.shape[-2] * scale, latents.shape[-1] * scale
    return pipe(PROMPT, height=height, width=width, latents=latents.clone(), **args).images


def theirs(name: str, pipe, net):
    if name == "sdxl":
        parts = {k: getattr(pipe, k) for k in pipe.components if k != "scheduler"}
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        their = StableDiffusionXLControlNetPipeline(**parts, controlnet=net, scheduler=scheduler, add_watermarker=False)
    else:
        their = FluxControlNetPipeline(**pipe.components, controlnet=net)
    their.set_progress_bar_config(disable=True)
    return their


@pytest.mark.parametrize(("name", "guess"), [("sdxl", False), ("sdxl", True), ("flux", False)])
def test_one_window_equals_the_familys_controlnet_pipeline(name: str, guess: bool, families) -> None:
    """Also diffusers' ``guess_mode`` on SDXL (FluxControlNetPipeline has none)."""
    pipe, net, _ = families[name]
    latents, image = noise(SIZE), control_image(SIZE, SIZE)
    given = latents if name == "sdxl" else FluxPipeline._pack_latents(latents, 1, 4, WINDOW, WINDOW)
    extra = {"max_sequence_length": 24, "control_image": image} if name == "flux" else {"image": image}
    mode = {"guess_mode": True} if guess else {}
    extra.update(mode)
    expected = theirs(name, pipe, net)(
        PROMPT,
        height=SIZE,
        width=SIZE,
        num_inference_steps=3,
        guidance_scale=CFG[name],
        controlnet_conditioning_scale=0.8,
        latents=given.clone(),
        output_type="latent",
        **extra,
    ).images
    if name == "flux":
        expected = FluxPipeline._unpack_latents(expected, SIZE, SIZE, 2)
    ours = run(controlled(pipe, net), latents, control_image=image, controlnet_conditioning_scale=0.8, **mode)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, run(pipe, latents), atol=1e-3)  # the ControlNet does change the result


def _controlled_outputs(name: str, pipe, net, image: torch.Tensor, scale: float):
    """``output(x, t, top, left, canvas)``: one window's guided output with ``net`` reading the window's own crop
    of ``image`` ``(1, 3, H, W)`` in [0, 1], computed straight from diffusers' components."""
    cfg = CFG[name]

    def crop(top: int, left: int) -> torch.Tensor:
        return image[..., 2 * top : 2 * top + SIZE, 2 * left : 2 * left + SIZE]

    if name == "sdxl":
        ref = StableDiffusionXLControlNetPipeline(
            **{k: getattr(pipe, k) for k in pipe.components}, controlnet=net, add_watermarker=False
        )
        embeds, negative, pooled, negative_pooled = ref.encode_prompt(PROMPT, device="cpu", negative_prompt=None)

        def output(x, t, top, left, canvas):
            ids = torch.tensor([[*canvas, top * 2, left * 2, SIZE, SIZE]], dtype=x.dtype).repeat(2, 1)
            added = {"text_embeds": torch.cat([negative_pooled, pooled]), "time_ids": ids}
            both, x2, c = torch.cat([negative, embeds]), torch.cat([x, x]), crop(top, left)
            down, mid = net(
                x2,
                t,
                encoder_hidden_states=both,
                controlnet_cond=torch.cat([c, c]),
                conditioning_scale=scale,
                added_cond_kwargs=added,
                return_dict=False,
            )
            out = ref.unet(
                x2,
                t,
                encoder_hidden_states=both,
                added_cond_kwargs=added,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
            uncond, cond = out.chunk(2)
            return uncond + cfg * (cond - uncond)

        return output
    ref = FluxPipeline(**pipe.components)
    embeds, pooled, text_ids = ref.encode_prompt(PROMPT, device="cpu", max_sequence_length=24)
    vae, half = pipe.vae, WINDOW // 2

    def output(x, t, top, left, canvas):
        latent = vae.encode(crop(top, left) * 2 - 1).latent_dist.mode()
        latent = (latent - vae.config.shift_factor) * vae.config.scaling_factor
        common = dict(
            timestep=t.expand(1) / 1000,
            guidance=torch.full([1], cfg),
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=FluxPipeline._prepare_latent_image_ids(1, half, half, "cpu", x.dtype),
            return_dict=False,
        )
        packed = FluxPipeline._pack_latents(x, 1, 4, WINDOW, WINDOW)
        cn = FluxPipeline._pack_latents(latent, 1, 4, WINDOW, WINDOW)
        blocks, singles = net(hidden_states=packed, controlnet_cond=cn, conditioning_scale=scale, **common)
        v = ref.transformer(
            hidden_states=packed, controlnet_block_samples=blocks, controlnet_single_block_samples=singles, **common
        )[0]
        return FluxPipeline._unpack_latents(v, SIZE, SIZE, 2)

    return output


@pytest.mark.parametrize("name", NAMES)
def test_several_windows_equal_a_per_window_reference_loop(name: str, families) -> None:
    pipe, net, _ = families[name]
    latents, image = noise(3 * SIZE), control_image(SIZE, 3 * SIZE)
    output = _controlled_outputs(name, pipe, net, as_tensor(image), 0.7)
    expected = _reference_multidiffusion(name, pipe, latents, 3, 4, CFG[name], output=output)
    ours = run(controlled(pipe, net), latents, control_image=image, controlnet_conditioning_scale=0.7)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_scale_zero_is_no_controlnet_and_a_second_one_at_zero_changes_nothing(name: str, families) -> None:
    pipe, net, other = families[name]
    latents, image, second = noise(3 * SIZE), control_image(SIZE, 3 * SIZE), control_image(SIZE, 3 * SIZE, seed=2)
    plain = run(pipe, latents)
    assert torch.equal(
        run(controlled(pipe, net), latents, control_image=image, controlnet_conditioning_scale=0.0), plain
    )
    one = run(controlled(pipe, net), latents, control_image=image, controlnet_conditioning_scale=0.6)
    both = controlled(pipe, net, other)
    torch.testing.assert_close(
        run(both, latents, control_image=[image, second], controlnet_conditioning_scale=[0.6, 0.0]), one
    )
    assert not torch.allclose(
        run(both, latents, control_image=[image, second], controlnet_conditioning_scale=[0.6, 0.6]), one, atol=1e-4
    )


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("name", NAMES)
def test_exact_sync_differentiates_through_the_controlnet_fast_sync_does_not(
    name: str, mode: str, families, random_lpips, monkeypatch
) -> None:
    pipe, net, _ = families[name]
    grads = []
    forward = net.forward

    def recording(*args, **kwargs):
        grads.append(torch.is_grad_enabled())
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", recording)
    latents, image, ours = noise(2 * SIZE), control_image(SIZE, 2 * SIZE), controlled(pipe, net)
    synced = run(ours, latents, control_image=image, sync_weight=20.0, sync_mode=mode, perceptual_loss=random_lpips)
    assert any(grads) == (mode == "exact")
    assert not torch.allclose(synced, run(ours, latents, control_image=image), atol=1e-4)  # sync acted


def test_a_controlnet_of_another_family_is_one_setting_error(families, pipe, sd3_dir) -> None:
    sdxl, sdxl_net, _ = families["sdxl"]
    flux, flux_net, _ = families["flux"]
    sd_net = random_controlnet(pipe.unet, 8)
    accepted = inspect.signature(type(flux_net).__init__).parameters
    arguments = {k: v for k, v in flux_net.config.items() if k in accepted}
    union = type(flux_net)(**{**arguments, "num_mode": 2})  # (from_config drops num_mode)
    image = control_image(SIZE, 3 * SIZE)
    cases = [
        (sdxl, sd_net, "is a ControlNet for Stable Diffusion"),
        (pipe, sdxl_net, "is a ControlNet for SDXL"),
        (sdxl, flux_net, "SDXL takes a ControlNetModel"),
        (flux, sdxl_net, "takes a FluxControlNetModel"),
        (flux, union, "is a union FLUX ControlNet"),
    ]
    for target, net, rule in cases:
        with pytest.raises(SettingError) as error:
            run(controlled(target, net), noise(3 * SIZE), control_image=image)
        assert error.value.setting == "controlnet" and rule in error.value.rule, error.value
    with pytest.raises(SettingError, match="not supported for FLUX") as error:
        run(controlled(flux, flux_net), noise(3 * SIZE), control_image=image, guess_mode=True)
    assert error.value.setting == "guess_mode"
    sd3 = SyncDiffusionPipeline.from_pretrained(sd3_dir)
    with pytest.raises(SettingError, match="not supported for SD3") as error:
        run(sd3, noise(3 * SIZE), control_image=image)
    assert error.value.setting == "control_image"


def test_two_flux_controlnets_save_and_load_back(families, tmp_path) -> None:
    pipe, net, other = families["flux"]
    both = controlled(pipe, net, other)
    both.save_pretrained(tmp_path / "flux")
    again = SyncDiffusionPipeline.from_pretrained(tmp_path / "flux")
    again.set_progress_bar_config(disable=True)
    assert type(again.controlnet).__name__ == "FluxMultiControlNetModel" and len(again.controlnet.nets) == 2
    latents, images = noise(2 * SIZE), [control_image(SIZE, 2 * SIZE, seed=s) for s in (1, 2)]
    torch.testing.assert_close(run(again, latents, control_image=images), run(both, latents, control_image=images))


@pytest.fixture(scope="module")
def xlabs(tmp_path_factory) -> tuple[SyncDiffusionPipeline, torch.nn.Module]:
    """A tiny FLUX.1 pipeline with an 8x VAE (XLabs' hint block downsamples pixels 8x, then packs 2x2, as FLUX's
    latents are) and a random XLabs-style ControlNet (``conditioning_embedding_channels``: its own hint block)."""
    from syncguide.family_pipelines import SyncFluxPipeline
    from syncguide.models.tiny_families import tiny_flux_components

    parts = tiny_flux_components(tmp_path_factory.mktemp("tiny-flux-8x"), vae_scale=8)
    net = random_flux_controlnet(parts["transformer"], xlabs=True)
    parts = {k: v for k, v in parts.items() if k not in ("image_encoder", "feature_extractor")}
    pipe = SyncFluxPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe, net.eval()


def test_an_xlabs_style_flux_controlnet_equals_diffusers_and_scale_0_is_none(xlabs) -> None:
    pipe, net = xlabs
    size = 8 * WINDOW  # 64 px: one 8-latent window
    latents = torch.randn(1, 4, WINDOW, WINDOW, generator=torch.Generator().manual_seed(0))
    image = control_image(size, size)
    expected = theirs("flux", pipe, net)(
        PROMPT,
        control_image=image,
        height=size,
        width=size,
        num_inference_steps=3,
        guidance_scale=CFG["flux"],
        controlnet_conditioning_scale=0.8,
        latents=FluxPipeline._pack_latents(latents, 1, 4, WINDOW, WINDOW),
        output_type="latent",
        max_sequence_length=24,
    ).images
    expected = FluxPipeline._unpack_latents(expected, size, size, 8)
    ours = controlled(pipe, net)
    got = run(ours, latents, control_image=image, controlnet_conditioning_scale=0.8)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    plain = run(pipe, latents)
    assert not torch.allclose(got, plain, atol=1e-3)
    wide = torch.randn(1, 4, WINDOW, 3 * WINDOW, generator=torch.Generator().manual_seed(1))
    zero = run(ours, wide, control_image=control_image(size, 3 * size), controlnet_conditioning_scale=0.0)
    assert torch.equal(zero, run(pipe, wide))
