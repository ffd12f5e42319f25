"""The backbone seam: conditioning rows and x0 for every output parametrisation."""

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from syncguide.models.backbone import Conditioning, x0_from_output


def test_flow_matching_x0_is_the_euler_step_to_sigma_zero() -> None:
    """On the last step (sigma_next = 0) the scheduler's Euler step lands exactly on x0 = x_t - sigma_t * v."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(4)
    sample, velocity = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)
    last = scheduler.timesteps[-1]
    for t in scheduler.timesteps[:-1]:
        scheduler.step(velocity, t, sample)  # advance the scheduler's step index to the last step
    expected = scheduler.step(velocity, last, sample).prev_sample
    torch.testing.assert_close(x0_from_output(scheduler, sample, velocity, last), expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_variance_preserving_x0_matches_the_scheduler(prediction_type: str) -> None:
    scheduler = DDIMScheduler(prediction_type=prediction_type, clip_sample=False)
    scheduler.set_timesteps(10)
    sample, output = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = scheduler.timesteps[4]
    expected = scheduler.step(output, t, sample).pred_original_sample
    torch.testing.assert_close(x0_from_output(scheduler, sample, output, t), expected)


def test_conditioning_rows_select_repeat_and_concatenate() -> None:
    a = Conditioning({"prompt_embeds": torch.arange(2.0)[:, None], "text_embeds": torch.tensor([[5.0], [6.0]])})
    b = Conditioning({"prompt_embeds": torch.tensor([[9.0]]), "text_embeds": torch.tensor([[7.0]])})
    assert a.rows == 2 and a.repeat(3).rows == 6
    assert a.repeat(2).cond["prompt_embeds"].flatten().tolist() == [0, 1, 0, 1]
    both = Conditioning.cat([a, b])
    assert both.cond["text_embeds"].flatten().tolist() == [5, 6, 7]
    assert both.select(torch.tensor([2, 0])).cond["prompt_embeds"].flatten().tolist() == [9, 0]
    assert both.uncond is None


def test_a_replacement_decoder_decodes_the_same_latents(pipe) -> None:
    from diffusers import AutoencoderTiny

    from syncguide.models.sd import StableDiffusionBackbone

    torch.manual_seed(0)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    parts = (pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet)
    latents = torch.randn(1, 4, 8, 16)
    with torch.no_grad():
        full = StableDiffusionBackbone(*parts).decode(latents)
        same = StableDiffusionBackbone(*parts, decoder=pipe.vae).decode(latents)
        fast = StableDiffusionBackbone(*parts, decoder=tiny).decode(latents)
    assert torch.equal(same, full)
    assert fast.shape == full.shape and not torch.allclose(fast, full, atol=1e-3)
    assert fast.min() >= 0 and fast.max() <= 1
