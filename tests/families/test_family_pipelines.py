"""SDXL, FLUX.1 and SD3 panoramas: the family's own diffusers pipeline as oracle on one window, an independent
per-window MultiDiffusion loop on several, sync, 360-degree wrap, layouts and SDG on every family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, FluxPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from syncguide import SyncDiffusionPipeline
from syncguide.errors import SettingError
from syncguide.family_pipelines import SyncDiffusionXLPipeline, SyncFluxPipeline, SyncSD3Pipeline
from syncguide.guidance.perceptual import per_image
from syncguide.guidance.semantic import Guidance
from syncguide.guidance.sync import synchronize
from syncguide.layout import Layout, Region
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.tiling import anchor_index, crop_all, make_windows

PROMPT = "a photo of the mountains at sunset"
FAMILIES = ("sdxl", "flux", "sd3")
DIRS = {"sdxl": "sdxl_dir", "flux": "flux_dir", "flux-schnell": "flux_schnell_dir", "sd3": "sd3_dir"}
THEIRS = {"sdxl": StableDiffusionXLPipeline, "flux": FluxPipeline, "sd3": StableDiffusion3Pipeline}
OURS = {"sdxl": SyncDiffusionXLPipeline, "flux": SyncFluxPipeline, "sd3": SyncSD3Pipeline}
WINDOW = 8  # latent pixels (16 px: the tiny VAEs downsample by 2)


def _family(name: str) -> str:
    return "flux" if name.startswith("flux") else name


@pytest.fixture(scope="module")
def pipes(request) -> dict[str, SyncDiffusionPipeline]:
    """Our pipeline of each family, loaded through the one entry point."""
    loaded = {}
    for name in FAMILIES:
        pipe = SyncDiffusionPipeline.from_pretrained(request.getfixturevalue(DIRS[name]))
        pipe.set_progress_bar_config(disable=True)
        loaded[name] = pipe
    return loaded


@pytest.mark.parametrize("name", [*DIRS, "stable-diffusion"])
def test_the_family_is_read_from_model_index(name: str, request) -> None:
    directory = request.getfixturevalue(DIRS.get(name, "tiny_dir"))
    pipe = SyncDiffusionPipeline.from_pretrained(directory)
    expected = OURS.get(_family(name), SyncDiffusionPipeline)
    assert type(pipe) is expected
    assert isinstance(pipe.scheduler, DDIMScheduler) == (not pipe.flow)  # SD, SDXL: DDIM; FLUX, SD3: their own


@pytest.mark.parametrize(
    ("index", "named"),
    [
        ({"_class_name": "KandinskyV22Pipeline", "unet": ["diffusers", "UNet2DConditionModel"]}, "KandinskyV22"),
        ({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}, "DDPMPipeline"),
    ],
)
def test_an_unsupported_family_is_one_error_naming_it_and_the_supported_list(tmp_path, index, named) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(SettingError, match=named) as error:
        SyncDiffusionPipeline.from_pretrained(tmp_path)
    assert "FluxPipeline" in str(error.value) and "StableDiffusionXLPipeline" in str(error.value)


CASES = {
    "sdxl": {"guidance_scale": 5.0},
    "flux": {"guidance_scale": 3.5, "max_sequence_length": 24},
    "flux-true-cfg": {"guidance_scale": 3.5, "true_cfg_scale": 2.0, "negative_prompt": "night"},
    "flux-schnell": {"guidance_scale": 0.0, "max_sequence_length": 256},
    "sd3": {"guidance_scale": 7.0, "negative_prompt": "snow"},
    "sd3-no-t5": {"guidance_scale": 7.0},
}


@pytest.mark.parametrize("case", CASES)
def test_one_window_equals_the_familys_own_pipeline_bit_for_bit(case: str, request) -> None:
    """Same prompt, steps, scheduler and generator seed: the same image, bit for bit (the noise is drawn as the
    family's pipeline draws it; the family's call arguments are accepted under the same names)."""
    name = case.removesuffix("-true-cfg").removesuffix("-no-t5")
    directory = request.getfixturevalue(DIRS[name])
    extra = {"text_encoder_3": None, "tokenizer_3": None} if case == "sd3-no-t5" else {}
    if name == "sdxl":  # both built with a scheduler of our choosing: from_pretrained(scheduler=...) is honoured
        extra["scheduler"] = DDIMScheduler.from_pretrained(directory, subfolder="scheduler")
    theirs = THEIRS[_family(name)].from_pretrained(directory, **extra)
    ours = SyncDiffusionPipeline.from_pretrained(directory, **extra)
    assert type(ours.scheduler) is type(theirs.scheduler)
    for pipe in (theirs, ours):
        pipe.set_progress_bar_config(disable=True)
    size, kwargs = 2 * WINDOW, CASES[case]
    expected = theirs(
        PROMPT,
        height=size,
        width=size,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(7),
        output_type="pt",
        **kwargs,
    ).images
    got = ours(
        PROMPT,
        height=size,
        width=size,
        window=WINDOW,
        stride=WINDOW,
        num_inference_steps=3,
        sync_weight=0.0,
        generator=torch.Generator().manual_seed(7),
        output_type="pt",
        **kwargs,
    ).images
    assert torch.equal(got, expected)


def _reference_outputs(name: str, pipe: SyncDiffusionPipeline, guidance_scale: float):
    """``output(x, t, top, left, canvas)``: one window's guided model output computed straight from the family's
    diffusers components (an independent reimplementation of the per-window model call)."""
    if name == "sdxl":
        ref = StableDiffusionXLPipeline(**{k: getattr(pipe, k) for k in pipe.components}, add_watermarker=False)
        embeds, negative, pooled, negative_pooled = ref.encode_prompt(PROMPT, device="cpu", negative_prompt=None)

        def output(x, t, top, left, canvas):
            ids = torch.tensor([[*canvas, top * 2, left * 2, WINDOW * 2, WINDOW * 2]], dtype=x.dtype).repeat(2, 1)
            added = {"text_embeds": torch.cat([negative_pooled, pooled]), "time_ids": ids}
            out = ref.unet(
                torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, embeds]), added_cond_kwargs=added
            ).sample
            uncond, cond = out.chunk(2)
            return uncond + guidance_scale * (cond - uncond)

        return output
    if name == "flux":
        ref = FluxPipeline(**{k: getattr(pipe, k) for k in pipe.components})
        embeds, pooled, text_ids = ref.encode_prompt(PROMPT, device="cpu", max_sequence_length=512)

        def output(x, t, top, left, canvas):
            packed = x.reshape(1, x.shape[1], WINDOW // 2, 2, WINDOW // 2, 2).permute(0, 2, 4, 1, 3, 5)
            packed = packed.reshape(1, (WINDOW // 2) ** 2, x.shape[1] * 4)
            ids = torch.stack(torch.meshgrid(torch.arange(WINDOW // 2), torch.arange(WINDOW // 2), indexing="ij"))
            ids = torch.cat([torch.zeros(1, WINDOW // 2, WINDOW // 2), ids.float()]).permute(1, 2, 0).reshape(-1, 3)
            v = ref.transformer(
                hidden_states=packed,
                timestep=t.expand(1) / 1000,
                guidance=torch.full([1], guidance_scale),
                pooled_projections=pooled,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=ids,
                return_dict=False,
            )[0]
            v = v.reshape(1, WINDOW // 2, WINDOW // 2, x.shape[1], 2, 2).permute(0, 3, 1, 4, 2, 5)
            return v.reshape(x.shape)

        return output
    ref = StableDiffusion3Pipeline(**{k: getattr(pipe, k) for k in pipe.components})
    embeds, negative, pooled, negative_pooled = ref.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt="")

    def output(x, t, top, left, canvas):
        out = ref.transformer(
            hidden_states=torch.cat([x, x]),
            timestep=t.expand(2),
            encoder_hidden_states=torch.cat([negative, embeds]),
            pooled_projections=torch.cat([negative_pooled, pooled]),
            return_dict=False,
        )[0]
        uncond, cond = out.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    return output


def _reference_multidiffusion(
    name: str, pipe, latents: torch.Tensor, steps: int, stride: int, cfg: float, output=None
) -> torch.Tensor:
    """MultiDiffusion written out: every window stepped on its own, then the canvas averaged (Bar-Tal et al.,
    Eq. 5); DDIM for SDXL, flow-matching Euler (x + (sigma' - sigma) v) with the family's timesteps otherwise.
    ``output``: the per-window model call (default :func:`_reference_outputs`)."""
    h, w = latents.shape[-2:]
    corners = [(top, left) for top in range(0, h - WINDOW + 1, stride) for left in range(0, w - WINDOW + 1, stride)]
    output = output or _reference_outputs(name, pipe, cfg)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if name == "flux":
        cfgs = scheduler.config
        mu = calculate_shift(
            (WINDOW // 2) ** 2, cfgs.base_image_seq_len, cfgs.max_image_seq_len, cfgs.base_shift, cfgs.max_shift
        )
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    else:
        scheduler.set_timesteps(steps)
    x = latents.clone()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            total, count = torch.zeros_like(x), torch.zeros_like(x)
            for top, left in corners:
                view = x[..., top : top + WINDOW, left : left + WINDOW]
                out = output(view, t, top, left, (2 * h, 2 * w))
                if name == "sdxl":
                    new = scheduler.step(out, t, view, return_dict=False)[0]
                else:
                    new = view + (scheduler.sigmas[i + 1] - scheduler.sigmas[i]) * out
                total[..., top : top + WINDOW, left : left + WINDOW] += new
                count[..., top : top + WINDOW, left : left + WINDOW] += 1
            x = total / count
    return x


@pytest.mark.parametrize("name", FAMILIES)
def test_multidiffusion_matches_an_independent_per_window_loop(name: str, pipes) -> None:
    pipe = pipes[name]
    latents = torch.randn(1, 4, WINDOW, 3 * WINDOW, generator=torch.Generator().manual_seed(1))
    cfg = pipe.default_settings().guidance_scale
    expected = _reference_multidiffusion(name, pipe, latents, steps=3, stride=4, cfg=cfg)
    got = pipe(
        PROMPT,
        height=2 * WINDOW,
        width=6 * WINDOW,
        window=WINDOW,
        stride=4,
        num_inference_steps=3,
        sync_weight=0.0,
        latents=latents,
        output_type="latent",
    ).images
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _run(pipe, **kwargs) -> torch.Tensor:
    args = dict(height=2 * WINDOW, width=6 * WINDOW, window=WINDOW, stride=4, num_inference_steps=3)
    args.update(kwargs)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **args).images


@pytest.mark.parametrize("name", FAMILIES)
def test_sync_weight_zero_is_multidiffusion_bit_for_bit_and_sync_changes_it(name: str, pipes, random_lpips) -> None:
    pipe = pipes[name]
    plain = _run(pipe, sync_weight=0.0, output_type="latent")
    never = _run(pipe, sync_weight=20.0, sync_steps=0, perceptual_loss=random_lpips, output_type="latent")
    synced = _run(pipe, sync_weight=20.0, perceptual_loss=random_lpips, output_type="latent")
    assert torch.equal(never, plain)
    assert not torch.allclose(synced, plain, atol=1e-4)


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("name", FAMILIES)
def test_one_sync_step_lowers_every_non_anchor_windows_loss(name: str, mode: str, pipes, random_lpips) -> None:
    """SyncDiffusion through the family's denoiser (exact; fast: its output held, no denoiser backward), decoder
    and LPIPS: one gradient step towards the anchor's x0 image lowers every other window's distance to it."""
    pipe = pipes[name]
    settings = pipe.default_settings()
    backbone = pipe.make_backbone(settings, (2 * WINDOW, 6 * WINDOW))
    scheduler = pipe.scheduler
    backbone.set_timesteps(scheduler, 10, torch.device("cpu"), WINDOW)
    t = scheduler.timesteps[2]
    windows = make_windows(WINDOW, 3 * WINDOW, WINDOW, 4)
    latents = torch.randn(1, backbone.latent_channels, WINDOW, 3 * WINDOW, generator=torch.Generator().manual_seed(0))
    negatives = [""] if pipe.uses_cfg(settings) else None
    cond = backbone.encode_prompt([PROMPT], negatives).repeat(len(windows))
    positions = torch.tensor([[0, win.left * backbone.vae_scale] for win in windows])
    denoiser = WindowDenoiser(backbone, scheduler, cond, settings.guidance_scale, 1, positions)
    views = crop_all(latents, windows)
    anchor = anchor_index(windows)

    with torch.no_grad():
        held = denoiser.output(views, t)

    def to_image(x, rows):
        if mode == "fast":
            return backbone.decode(denoiser.x0(x, held[rows], t))
        return denoiser.images(x, rows, t)

    def distance(v):
        with torch.no_grad():
            images = to_image(v, torch.arange(len(windows))) * 2 - 1
        return per_image(random_lpips, images, images[anchor : anchor + 1].expand_as(images))

    synced = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=2)
    if name == "flux" and mode == "exact":  # a transformer's checkpointing, one window per pass: the same step
        with backbone.gradient_checkpointing(True):
            again = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=1)
        assert backbone.transformer.is_gradient_checkpointing is False
        torch.testing.assert_close(again, synced, rtol=1e-4, atol=1e-5)
    before, after = distance(views), distance(synced)
    others = [j for j in range(len(windows)) if j != anchor]
    assert (after[others] < before[others]).all(), (before, after)
    assert torch.equal(synced[anchor], views[anchor])


@pytest.mark.parametrize("name", FAMILIES)
def test_a_360_degree_panorama_is_the_same_rotated(name: str, pipes) -> None:
    """Circular windows treat every column alike: rotating the initial noise by one stride rotates the result
    (SDXL with crop-free micro-conditioning: its default conditions on each window's place, by design)."""
    pipe = pipes[name]
    latents = torch.randn(1, 4, WINDOW, 4 * WINDOW, generator=torch.Generator().manual_seed(2))
    extra = {"micro_conditioning": "zeros"} if name == "sdxl" else {}
    args = dict(circular_padding=True, sync_weight=0.0, output_type="latent", width=8 * WINDOW, **extra)
    plain = _run(pipe, latents=latents, **args)
    rotated = _run(pipe, latents=torch.roll(latents, 4, dims=-1), **args)
    torch.testing.assert_close(rotated, torch.roll(plain, 4, dims=-1), rtol=1e-5, atol=1e-5)
    image = _run(pipe, latents=latents, circular_padding=True, sync_weight=0.0, width=8 * WINDOW, output_type="pt")
    assert image.shape == (1, 3, 2 * WINDOW, 8 * WINDOW) and torch.isfinite(image).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_a_layout_whose_region_covers_all_with_the_background_prompt_is_the_panorama(name: str, pipes) -> None:
    pipe = pipes[name]
    latents = torch.randn(1, 4, WINDOW, 3 * WINDOW, generator=torch.Generator().manual_seed(3))
    args = dict(sync_weight=0.0, output_type="latent", latents=latents, bootstrap_fraction=0.0)
    panorama = _run(pipe, **{k: v for k, v in args.items() if k != "bootstrap_fraction"})
    layout = Layout(PROMPT, (Region(PROMPT, box=(0.0, 0.0, 1.0, 1.0)),))
    common = dict(height=2 * WINDOW, width=6 * WINDOW, window=WINDOW, stride=4, num_inference_steps=3)
    same = pipe.layout(layout, **common, **args).images
    torch.testing.assert_close(same, panorama, rtol=1e-5, atol=1e-5)
    halves = Layout(PROMPT, (Region("snow", box=(0.0, 0.0, 0.5, 1.0)),))
    mixed = pipe.layout(halves, **common, **{**args, "bootstrap_fraction": 0.5}).images
    assert torch.isfinite(mixed).all() and not torch.allclose(mixed, panorama, atol=1e-4)


class Brightness(Guidance):
    """F = mean brightness of the image in [-1, 1]: its gradient brightens."""

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        return x.flatten(1).mean(-1)


@pytest.mark.parametrize("name", FAMILIES)
def test_sdg_on_x0_steers_every_family(name: str, pipes) -> None:
    pipe = pipes[name]
    plain = _run(pipe, sync_weight=0.0, output_type="pt")
    brighter = _run(pipe, sync_weight=0.0, output_type="pt", semantic_guidance=Brightness(weight=2000.0))
    assert brighter.mean() > plain.mean() + 1e-3


def test_sdxl_micro_conditioning_conventions_differ_on_a_wide_canvas_and_agree_on_one_window(pipes) -> None:
    pipe = pipes["sdxl"]
    wide = {c: _run(pipe, micro_conditioning=c, sync_weight=0.0, output_type="latent") for c in ("window", "zeros")}
    assert not torch.allclose(wide["window"], wide["zeros"], atol=1e-5)
    one = {
        c: _run(pipe, micro_conditioning=c, sync_weight=0.0, width=2 * WINDOW, output_type="latent")
        for c in ("window", "zeros", "canvas")
    }
    assert torch.equal(one["window"], one["zeros"]) and torch.equal(one["window"], one["canvas"])


def test_precomputed_embeddings_are_refused_where_the_family_needs_pooled_ones(pipes) -> None:
    with pytest.raises(SettingError, match="prompt_embeds"):
        pipes["flux"](prompt_embeds=torch.zeros(1, 4, 32), height=16, width=16, window=WINDOW, stride=4)


def test_scheduler_choice_follows_the_family(pipes) -> None:
    with pytest.raises(SettingError, match="flow-euler"):
        pipes["flux"].set_scheduler("ddim")
    with pytest.raises(SettingError, match="ddim"):
        pipes["sdxl"].set_scheduler("flow-euler")


def test_saved_pipelines_load_back_through_the_entry_point(pipes, tmp_path: Path) -> None:
    pipes["flux"].save_pretrained(tmp_path / "flux")
    again = SyncDiffusionPipeline.from_pretrained(tmp_path / "flux")
    assert type(again) is SyncFluxPipeline
    again.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        _run(again, output_type="latent", sync_weight=0.0), _run(pipes["flux"], output_type="latent", sync_weight=0.0)
    )


def test_a_float16_vae_that_asks_for_upcasting_decodes_in_float32(pipes) -> None:
    backbone = pipes["sdxl"].make_backbone()
    vae = backbone.vae
    try:
        vae.register_to_config(force_upcast=True)
        vae.to(torch.float16)
        latents = torch.randn(1, 4, WINDOW, WINDOW, generator=torch.Generator().manual_seed(4))
        images = backbone.decode(latents)
        assert vae.dtype == torch.float32 and images.dtype == torch.float32 and torch.isfinite(images).all()
    finally:
        vae.to(torch.float32)
