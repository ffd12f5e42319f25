import copy

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPanoramaPipeline, StableDiffusionPipeline

from reference import multidiffusion
from syncguide import SyncDiffusionPipeline
from syncguide.pipeline import seam_padding
from syncguide.schedulers import make_scheduler, predict_x0

PROMPT = "a photo of mountains at sunset"


def noise(pipe, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(seed))


def run(pipe, latents, **kwargs) -> torch.Tensor:
    args = dict(num_inference_steps=4, stride=4, output_type="latent", sync_weight=0.0)
    args.update(kwargs)
    height, width = latents.shape[-2] * 8, latents.shape[-1] * 8
    return pipe(PROMPT, height=height, width=width, latents=latents.clone(), **args).images


def test_weight_zero_is_multidiffusion_bit_for_bit(pipe, random_lpips) -> None:
    latents = noise(pipe, 64, 192)
    reference = multidiffusion(pipe, PROMPT, latents.clone(), steps=4, cfg=7.5, stride=4)
    ours = run(pipe, latents)
    assert torch.equal(ours, reference)
    assert torch.equal(run(pipe, latents, sync_weight=20.0, sync_steps=0, perceptual_loss=random_lpips), reference)
    synced = run(pipe, latents, sync_weight=20.0, perceptual_loss=random_lpips)
    assert not torch.allclose(synced, reference, atol=1e-4)  # the sync step does change the result


def test_view_batching_does_not_change_the_result(pipe) -> None:
    latents = noise(pipe, 64, 192)
    one = run(pipe, latents, view_batch_size=1)
    many = run(pipe, latents, view_batch_size=3)
    torch.testing.assert_close(many, one, rtol=1e-4, atol=1e-5)


def test_matches_diffusers_panorama_pipeline(pipe) -> None:
    """Same latents, stride 8, 64-latent windows (that pipeline's only geometry): same result."""
    theirs = StableDiffusionPanoramaPipeline(
        **pipe.components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    theirs.set_progress_bar_config(disable=True)
    latents = noise(pipe, 512, 640)
    expected = theirs(
        PROMPT, height=512, width=640, num_inference_steps=2, latents=latents.clone(), output_type="latent"
    ).images
    ours = run(pipe, latents, num_inference_steps=2, stride=8, window=64)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dpm++", "unipc"])
def test_multistep_scheduler_keeps_per_window_state(pipe, name: str) -> None:
    scheduler = make_scheduler(name, pipe.scheduler.config)
    latents = noise(pipe, 64, 192)
    reference = multidiffusion(pipe, PROMPT, latents.clone(), steps=5, cfg=7.5, stride=4, scheduler=scheduler)
    ours_pipe = SyncDiffusionPipeline(**pipe.components)
    ours_pipe.set_progress_bar_config(disable=True)
    ours_pipe.scheduler = copy.deepcopy(scheduler)
    ours = run(ours_pipe, latents, num_inference_steps=5)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predict_x0_matches_ddim(prediction_type: str) -> None:
    scheduler = DDIMScheduler(prediction_type=prediction_type, beta_schedule="scaled_linear", clip_sample=False)
    scheduler.set_timesteps(10)
    sample, output = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = scheduler.timesteps[3]
    expected = scheduler.step(output, t, sample).pred_original_sample
    torch.testing.assert_close(predict_x0(scheduler, sample, output, t), expected)


def test_v_prediction_model(vpred_pipe, random_lpips) -> None:
    latents = noise(vpred_pipe, 64, 192)
    reference = multidiffusion(vpred_pipe, PROMPT, latents.clone(), steps=4, cfg=7.5, stride=4)
    assert torch.equal(run(vpred_pipe, latents), reference)
    synced = run(vpred_pipe, latents, sync_weight=5.0, perceptual_loss=random_lpips)
    assert torch.isfinite(synced).all() and not torch.allclose(synced, reference)


def test_same_seed_same_result_and_latents_honoured(pipe) -> None:
    kwargs = dict(height=64, width=128, num_inference_steps=3, stride=4, output_type="np", sync_weight=0.0)
    a = pipe(PROMPT, generator=torch.Generator().manual_seed(3), **kwargs).images
    b = pipe(PROMPT, generator=torch.Generator().manual_seed(3), **kwargs).images
    c = pipe(PROMPT, latents=noise(pipe, 64, 128, seed=3), **kwargs).images
    d = pipe(PROMPT, generator=torch.Generator().manual_seed(4), **kwargs).images
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_output_types_and_shapes(pipe) -> None:
    kwargs = dict(
        height=64,
        width=128,
        num_inference_steps=2,
        stride=8,
        sync_weight=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    images = pipe([PROMPT, "a lake"], **kwargs).images
    assert len(images) == 2 and isinstance(images[0], PIL.Image.Image) and images[0].size == (128, 64)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    pt = pipe([PROMPT, "a lake"], output_type="pt", **kwargs).images
    assert pt.shape == (2, 3, 64, 128) and pt.min() >= 0 and pt.max() <= 1
    assert np.array_equal(np.asarray(images[1]), (pt[1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_callback_on_step_end_sees_and_replaces_latents(pipe) -> None:
    seen = []

    def callback(p, i, t, kwargs):
        seen.append(i)
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == 2 else {}

    out = pipe(
        PROMPT,
        height=64,
        width=128,
        num_inference_steps=3,
        stride=8,
        sync_weight=0.0,
        output_type="latent",
        callback_on_step_end=callback,
    ).images
    assert seen == [0, 1, 2]
    assert torch.equal(out, torch.zeros_like(out))


def test_bad_latents_shape_is_rejected(pipe) -> None:
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe(PROMPT, height=64, width=128, latents=torch.randn(1, 4, 8, 8), stride=4, num_inference_steps=1)


def test_built_from_an_existing_stable_diffusion_pipeline(pipe, tiny_dir) -> None:
    sd = StableDiffusionPipeline.from_pretrained(tiny_dir)
    ours = SyncDiffusionPipeline.from_pipe(sd)
    assert ours.unet is sd.unet and ours.vae is sd.vae
    ours.set_progress_bar_config(disable=True)
    latents = noise(pipe, 64, 128)
    torch.testing.assert_close(run(ours, latents), run(pipe, latents), rtol=0, atol=0)


def test_circular_panorama_has_no_seam(pipe) -> None:
    kwargs = dict(height=64, width=256, num_inference_steps=6, stride=2, circular_padding=True, sync_weight=0.0)
    image = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images[0]
    jumps = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1))  # per neighbouring column pair
    join = (image[..., 0] - image[..., -1]).abs().mean()
    assert join <= jumps.max()  # no outlier at the join (the strict check is the rotated decode below)
    # the join is not special: decoding the panorama rotated by half its width (join in the middle) gives
    # the same pixels there; a plain decode (no wrap padding) does not
    latents = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs).images
    near_join = [*range(8), *range(-8, 0)]
    with torch.no_grad():
        rotated = pipe.backbone.decode(torch.roll(latents, 16, dims=-1), wrap=seam_padding(8))[0]
        plain = pipe.backbone.decode(latents)[0]
    truth = torch.roll(rotated, -128, dims=-1)[..., near_join]
    assert (image[..., near_join] - truth).abs().mean() < 0.02
    assert (plain[..., near_join] - truth).abs().mean() > 0.05


def test_from_pretrained_defaults_to_ddim_with_the_checkpoint_schedule(pipe, tmp_path) -> None:
    from diffusers import PNDMScheduler

    sd = StableDiffusionPipeline(
        **pipe.components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    sd.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    sd.save_pretrained(tmp_path)
    loaded = SyncDiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, DDIMScheduler)
    assert torch.equal(loaded.scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod)
    kept = SyncDiffusionPipeline.from_pretrained(tmp_path, scheduler=PNDMScheduler.from_config(sd.scheduler.config))
    assert isinstance(kept.scheduler, PNDMScheduler)
