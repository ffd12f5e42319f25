"""Learned-variance models (out_channels = 2 * in_channels, as OpenAI's ADM): DDPM shifts by the model's Sigma."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from syncguide.guidance.semantic import Guidance
from syncguide.sampling.guided import guided_step
from syncguide.schedulers import split_output, step_arguments, step_variance
from syncguide.sdg_pipeline import SemanticGuidancePipeline


class Direction(Guidance):
    """F = sum(x * direction): its gradient is ``direction`` (weight 1)."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight=weight)
        self.direction = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        return (x * self.direction).flatten(1).sum(-1)


def tiny_unet(out_channels: int) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16, in_channels=3, out_channels=out_channels, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def learned_unet() -> UNet2DModel:
    return tiny_unet(6)


def _pipe(unet: UNet2DModel, scheduler) -> SemanticGuidancePipeline:
    pipe = SemanticGuidancePipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
def test_ddpm_shift_is_the_models_variance_times_gradient(variance_type: str) -> None:
    scheduler = DDPMScheduler(variance_type=variance_type)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, grad = torch.randn(2, 2, 3, 8, 8, generator=g)
    # "learned" reads the output as the variance itself: keep it positive (diffusers takes its square root);
    # "learned_range" reads v in [-1, 1] as the interpolation between the log posterior variance and log beta.
    predicted = torch.rand(2, 3, 8, 8, generator=g)
    predicted = predicted * 0.01 if variance_type == "learned" else predicted * 2 - 1
    out = torch.cat([torch.randn(2, 3, 8, 8, generator=g), predicted], dim=1)
    t, prev_t = scheduler.timesteps[3], int(scheduler.timesteps[4])
    plain = guided_step(scheduler, out, x, t, None, step_arguments(scheduler, torch.Generator().manual_seed(1)), -1)
    guided = guided_step(
        scheduler, out, x, t, grad, step_arguments(scheduler, torch.Generator().manual_seed(1)), prev_t
    )
    variance = step_variance(scheduler, int(t), prev_t, out[:, 3:])
    own = scheduler._get_variance(t, predicted_variance=out[:, 3:])  # diffusers' (private) value
    expected = own if variance_type == "learned" else own.exp()  # learned_range: _get_variance is a log variance
    torch.testing.assert_close(variance, expected, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(guided - plain, expected * grad, rtol=1e-4, atol=1e-6)
    fixed = step_variance(DDPMScheduler.from_config(scheduler.config, variance_type="fixed_small"), int(t), prev_t)
    assert not torch.allclose(variance, torch.full_like(variance, fixed))  # not the fixed posterior variance


def test_weight_zero_equals_diffusers_ddpm_pipeline_on_a_learned_variance_model(learned_unet) -> None:
    config = DDPMScheduler(variance_type="learned_range").config
    reference = DDPMPipeline(unet=learned_unet, scheduler=DDPMScheduler.from_config(config))
    reference.set_progress_bar_config(disable=True)
    ours = _pipe(learned_unet, DDPMScheduler.from_config(config))
    kwargs = {"num_inference_steps": 5, "output_type": "np"}
    expected = reference(batch_size=2, generator=torch.Generator().manual_seed(3), **kwargs).images
    got = ours(2, generator=torch.Generator().manual_seed(3), semantic_guidance=Direction(0.0), **kwargs).images
    plain = ours(2, generator=torch.Generator().manual_seed(3), **kwargs).images
    assert (got == expected).all() and (plain == expected).all()
    guided = ours(2, generator=torch.Generator().manual_seed(3), semantic_guidance=Direction(1.0), **kwargs).images
    assert not (guided == expected).all()


def test_ddim_steps_the_noise_half_of_a_learned_variance_output(learned_unet) -> None:
    config = DDPMScheduler(variance_type="learned_range").config
    pipe = _pipe(learned_unet, DDIMScheduler.from_config(config))
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    got = pipe(2, num_inference_steps=4, latents=latents, output_type="pt").images
    scheduler = DDIMScheduler.from_config(config)  # the reference loop, by hand: diffusers' DDIM on eps only
    scheduler.set_timesteps(4)
    x = latents
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(learned_unet(x, t).sample[:, :3], t, x).prev_sample
    torch.testing.assert_close(got, (x / 2 + 0.5).clamp(0, 1), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("out_channels", "variance_type", "message"),
    [(6, "fixed_small", "needs variance_type 'learned' or 'learned_range'"),
     (3, "learned_range", r"needs a UNet with out_channels = 2 \* in_channels"),
     (4, "fixed_small", "out_channels must be in_channels or 2 \\* in_channels")],
)  # fmt: skip
def test_output_that_does_not_fit_the_variance_type_is_refused_before_sampling(out_channels, variance_type, message):
    unet = tiny_unet(out_channels)
    calls = []
    unet.register_forward_hook(lambda *args: calls.append(1))
    pipe = _pipe(unet, DDPMScheduler(variance_type=variance_type))
    with pytest.raises(ValueError, match=message):
        pipe(1, num_inference_steps=2, output_type="pt")
    assert calls == []


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_a_step_refuses_an_output_that_would_broadcast_or_be_misread(cls) -> None:
    scheduler = cls()
    scheduler.set_timesteps(10)
    x, t = torch.zeros(1, 3, 8, 8), scheduler.timesteps[0]
    with pytest.raises(ValueError, match=r"out_channels must be in_channels or 2 \* in_channels; got 1"):
        guided_step(scheduler, torch.zeros(1, 1, 8, 8), x, t, None, {}, int(scheduler.timesteps[1]))
    with pytest.raises(ValueError, match="the sample's 3 channels or twice as many"):
        split_output(torch.zeros(1, 1, 8, 8), x)
    if cls is DDPMScheduler:  # fixed variance: a 6-channel output is not silently read as 6 noise channels
        with pytest.raises(ValueError, match="needs variance_type 'learned' or 'learned_range'"):
            guided_step(scheduler, torch.zeros(1, 6, 8, 8), x, t, None, {}, int(scheduler.timesteps[1]))
