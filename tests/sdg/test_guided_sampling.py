"""Where the guidance gradient goes: DDPM mean shift by Sigma * grad, DDIM score shift; no guidance = diffusers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from syncguide.guidance.semantic import Guidance, TextGuidance
from syncguide.sampling.guided import guided_step
from syncguide.schedulers import shift_score, step_arguments, step_variance
from syncguide.sdg_pipeline import SemanticGuidancePipeline


class Recorder(Guidance):
    """A guidance with a known gradient (F = sum(x * direction)) that records the timesteps it sees."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=weight)
        self.seen: list[int] = []
        self.direction = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        self.seen.append(int(t[0]))
        return (x * self.direction).flatten(1).sum(-1)


@pytest.fixture(scope="module")
def sdg_pipe(tiny_ddpm_dir: Path) -> SemanticGuidancePipeline:
    pipe = SemanticGuidancePipeline.from_pretrained(tiny_ddpm_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_without_guidance_equals_diffusers_pipelines(sdg_pipe, kind: str) -> None:
    cls, reference_cls = (DDPMScheduler, DDPMPipeline) if kind == "ddpm" else (DDIMScheduler, DDIMPipeline)
    scheduler = cls.from_config(sdg_pipe.scheduler.config)
    ours = SemanticGuidancePipeline(unet=sdg_pipe.unet, scheduler=scheduler)
    ours.set_progress_bar_config(disable=True)
    reference = reference_cls(unet=sdg_pipe.unet, scheduler=cls.from_config(sdg_pipe.scheduler.config))
    reference.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": 10, "output_type": "np"}
    expected = reference(batch_size=2, generator=torch.Generator().manual_seed(3), **kwargs).images
    got = ours(batch_size=2, generator=torch.Generator().manual_seed(3), **kwargs).images
    np_zero = ours(
        batch_size=2, generator=torch.Generator().manual_seed(3), semantic_guidance=Recorder(0.0), **kwargs
    ).images
    assert (got == expected).all()
    assert (np_zero == expected).all()


def test_ddpm_step_shifts_mean_by_posterior_variance_times_gradient(sdg_pipe) -> None:
    scheduler = DDPMScheduler.from_config(sdg_pipe.scheduler.config)
    scheduler.set_timesteps(10)  # respaced: 900, 800, ..., 0
    x, eps, grad = torch.randn(3, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t, prev_t = scheduler.timesteps[3], int(scheduler.timesteps[4])
    plain = guided_step(scheduler, eps, x, t, None, step_arguments(scheduler, torch.Generator().manual_seed(1)), -1)
    kwargs = step_arguments(scheduler, torch.Generator().manual_seed(1))
    guided = guided_step(scheduler, eps, x, t, grad, kwargs, prev_t)
    variance = step_variance(scheduler, int(t), prev_t)
    assert variance == pytest.approx(float(scheduler._get_variance(t)), rel=1e-5)  # diffusers' own (private) value
    torch.testing.assert_close(guided - plain, variance * grad)


def test_ddim_step_shifts_eps_by_sqrt_one_minus_abar(sdg_pipe) -> None:
    scheduler = DDIMScheduler.from_config(sdg_pipe.scheduler.config)
    scheduler.set_timesteps(10)
    x, eps, grad = torch.randn(3, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = scheduler.timesteps[2]
    guided = guided_step(scheduler, eps, x, t, grad, {}, int(scheduler.timesteps[3]))
    abar = scheduler.alphas_cumprod[int(t)]
    expected = scheduler.step(eps - (1 - abar).sqrt() * grad, t, x).prev_sample
    torch.testing.assert_close(guided, expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_score_shift_is_the_same_eps_shift_in_every_parametrisation(prediction_type: str) -> None:
    scheduler = DDIMScheduler(prediction_type=prediction_type)
    x, eps, grad = torch.randn(3, 1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    t = 600
    abar = scheduler.alphas_cumprod[t]
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    as_output = {"epsilon": eps, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0, "sample": x0}
    shifted = shift_score(scheduler, as_output[prediction_type], grad, t)
    eps_new = eps - (1 - abar).sqrt() * grad
    x0_new = (x - (1 - abar).sqrt() * eps_new) / abar.sqrt()
    expected = {"epsilon": eps_new, "v_prediction": abar.sqrt() * eps_new - (1 - abar).sqrt() * x0_new}
    torch.testing.assert_close(shifted, expected.get(prediction_type, x0_new), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_guidance_sees_the_true_timesteps_and_moves_samples_along_its_gradient(sdg_pipe, kind: str) -> None:
    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    # No x0 clipping: clipping a random UNet's x0 would discard the x0 part of DDIM's score shift.
    scheduler = cls.from_config(sdg_pipe.scheduler.config, clip_sample=False)
    pipe = SemanticGuidancePipeline(unet=sdg_pipe.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    recorder = Recorder(weight=1.0)
    common = {"batch_size": 2, "num_inference_steps": 5, "output_type": "pt"}
    guided = pipe(generator=torch.Generator().manual_seed(0), semantic_guidance=recorder, **common).images
    plain = pipe(generator=torch.Generator().manual_seed(0), **common).images
    assert recorder.seen == [int(t) for t in pipe.scheduler.timesteps]
    assert recorder.seen[0] > 500  # the original 0..999 index, not the step number
    gain = ((guided - plain) * recorder.direction).flatten(1).sum(-1)
    assert torch.all(gain > 0)


def test_text_guided_sampling_raises_the_clip_score(sdg_pipe, tiny_clip_dir: Path) -> None:
    from syncguide.models.clip_towers import load_transformers_clip

    clip = load_transformers_clip(tiny_clip_dir)
    guidance = TextGuidance(weight=2000.0, encoder=clip, text="a photo of snow")
    common = {"batch_size": 4, "num_inference_steps": 10, "output_type": "pt"}
    guided = sdg_pipe(generator=torch.Generator().manual_seed(0), semantic_guidance=guidance, **common).images
    plain = sdg_pipe(generator=torch.Generator().manual_seed(0), **common).images
    with torch.no_grad():
        score = guidance.objective
        assert score(guided * 2 - 1, None).mean() > score(plain * 2 - 1, None).mean()


def test_bf16_guided_sampling_matches_fp32(sdg_pipe, tiny_clip_dir: Path) -> None:
    from syncguide.models.clip_towers import load_transformers_clip

    images = {}
    for dtype in (torch.float32, torch.bfloat16):
        clip = load_transformers_clip(tiny_clip_dir).to(dtype)
        pipe = SemanticGuidancePipeline(unet=sdg_pipe.unet.to(dtype), scheduler=sdg_pipe.scheduler)
        pipe.set_progress_bar_config(disable=True)
        guidance = TextGuidance(weight=50.0, encoder=clip, text="a photo of snow")
        latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).to(dtype)
        images[dtype] = pipe(
            2,
            generator=torch.Generator().manual_seed(1),
            num_inference_steps=5,
            semantic_guidance=guidance,
            latents=latents,
            output_type="pt",
        ).images
    sdg_pipe.unet.to(torch.float32)
    assert torch.isfinite(images[torch.bfloat16]).all()
    assert (images[torch.bfloat16] - images[torch.float32]).abs().mean() < 0.05


def test_panorama_semantic_guidance_weight_zero_is_exact_and_style_acts(pipe, tiny_clip_dir: Path) -> None:
    from syncguide.guidance.semantic import StyleGuidance
    from syncguide.models.clip_towers import load_transformers_clip

    clip = load_transformers_clip(tiny_clip_dir)
    reference = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    common = {"height": 64, "width": 128, "stride": 4, "num_inference_steps": 3, "sync_weight": 0.0}
    latents = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(0))

    def run(guidance):
        return pipe("a photo of hills", latents=latents, output_type="pt", semantic_guidance=guidance, **common).images

    plain = run(None)
    assert torch.equal(run(StyleGuidance(weight=0.0, encoder=clip, reference=reference)), plain)
    styled = run(StyleGuidance(weight=1e4, encoder=clip, reference=reference))
    assert (styled - plain).abs().max() > 1e-3
