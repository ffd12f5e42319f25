"""diffusers' conventions on SyncDiffusionPipeline: keyword-only arguments, names, callbacks, outputs."""

from dataclasses import dataclass

import pytest
import torch
from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

from syncguide import Layout, Region, SyncDiffusionPipeline
from syncguide.errors import SettingError
from syncguide.guidance.semantic import Guidance

PROMPT = "a photo of mountains at sunset"
SMALL = dict(height=64, width=128, num_inference_steps=3, stride=4, sync_weight=0.0)


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(seed))


def latents_of(pipe, **kwargs) -> torch.Tensor:
    prompt = kwargs.pop("prompt", PROMPT)
    return pipe(prompt, **{**SMALL, "output_type": "latent", "latents": noise(), **kwargs}).images


def test_arguments_after_the_prompt_are_keyword_only(pipe) -> None:
    with pytest.raises(TypeError):
        pipe(PROMPT, 64, 128)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_steps'"):
        pipe(PROMPT, num_steps=3)


def test_circular_is_a_deprecated_alias_of_circular_padding(pipe) -> None:
    padded = latents_of(pipe, circular_padding=True)
    with pytest.warns(FutureWarning, match="circular_padding"):
        aliased = latents_of(pipe, circular=True)
    assert torch.equal(aliased, padded)
    assert not torch.equal(padded, latents_of(pipe))


def test_unknown_callback_tensor_is_refused_before_any_work(pipe) -> None:
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs must be among latents, denoised"):
            latents_of(pipe, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["noise"])
        with pytest.raises(ValueError, match="output_type must be one of"):
            latents_of(pipe, output_type="jpeg")
    finally:
        hook.remove()
    assert calls == []


def test_callback_reads_the_denoised_prediction(pipe) -> None:
    """DDIM (eta 0) is linear in (x0, eps): from the canvas before and after a step, x0 is determined."""
    seen = []

    def callback(p, i, t, values):
        seen.append((int(t), values["latents"].clone(), values["denoised"].clone()))
        return {}

    start = noise() * pipe.scheduler.init_noise_sigma
    latents_of(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "denoised"])
    abar = pipe.scheduler.alphas_cumprod
    before = start
    for k, (t, after, denoised) in enumerate(seen):
        t_prev = seen[k + 1][0] if k + 1 < len(seen) else -1
        a, a_prev = abar[t], abar[t_prev] if t_prev >= 0 else pipe.scheduler.final_alpha_cumprod
        # before = sqrt(a) x0 + sqrt(1 - a) eps;  after = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
        x0 = (before * (1 - a_prev).sqrt() - after * (1 - a).sqrt()) / (
            a.sqrt() * (1 - a_prev).sqrt() - a_prev.sqrt() * (1 - a).sqrt()
        )
        torch.testing.assert_close(denoised, x0, rtol=1e-3, atol=1e-3)
        before = after
    assert len(seen) == 3


def test_eta_adds_fresh_noise_only_when_positive(pipe) -> None:
    plain = latents_of(pipe, generator=torch.Generator().manual_seed(1))
    assert torch.equal(latents_of(pipe, eta=0.0, generator=torch.Generator().manual_seed(1)), plain)
    stochastic = latents_of(pipe, eta=0.8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(latents_of(pipe, eta=0.8, generator=torch.Generator().manual_seed(1)), stochastic)
    assert not torch.allclose(stochastic, plain, atol=1e-3)


def test_prompt_embeds_replace_the_prompt(pipe) -> None:
    encoded = pipe.backbone.encode_prompt([PROMPT], ["blurry"])
    expected = latents_of(pipe, negative_prompt="blurry")
    given = latents_of(
        pipe,
        prompt=None,
        prompt_embeds=encoded.cond["prompt_embeds"],
        negative_prompt_embeds=encoded.uncond["prompt_embeds"],
    )
    assert torch.equal(given, expected)
    with pytest.raises(ValueError, match="exactly one of prompt and prompt_embeds"):
        latents_of(pipe, prompt_embeds=encoded.cond["prompt_embeds"])


def test_num_images_per_prompt_repeats_each_prompt(pipe) -> None:
    two = pipe([PROMPT, "a lake"], **SMALL, num_images_per_prompt=2, output_type="latent").images
    assert two.shape[0] == 4


def test_return_dict_false_returns_images_and_no_nsfw_flags(pipe) -> None:
    out = pipe(PROMPT, **SMALL, latents=noise(), output_type="np", return_dict=False)
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is None
    assert (out[0] == pipe(PROMPT, **SMALL, latents=noise(), output_type="np").images).all()


def test_pt_output_keeps_device_and_dtype(tiny_dir) -> None:
    half = SyncDiffusionPipeline.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    half.set_progress_bar_config(disable=True)
    images = half(PROMPT, **SMALL, output_type="pt").images
    assert images.dtype == torch.bfloat16 and images.device == half.device and images.shape == (1, 3, 64, 128)


def test_from_pipe_and_from_pretrained_both_default_to_ddim(pipe) -> None:
    sd = StableDiffusionPipeline(
        **pipe.components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    sd.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    ours = SyncDiffusionPipeline.from_pipe(sd)
    assert isinstance(ours.scheduler, DDIMScheduler)
    assert torch.equal(ours.scheduler.alphas_cumprod, sd.scheduler.alphas_cumprod)
    kept = SyncDiffusionPipeline.from_pipe(sd, scheduler=PNDMScheduler.from_config(sd.scheduler.config))
    assert isinstance(kept.scheduler, PNDMScheduler)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("sync_weight", float("nan")), ("guidance_scale", float("inf")), ("num_inference_steps", 0), ("eta", -1.0)],
)
def test_bad_settings_name_the_keyword(pipe, setting: str, value: float) -> None:
    with pytest.raises(SettingError, match=f"^{setting} must be"):
        latents_of(pipe, **{setting: value})


@dataclass
class Brightness(Guidance):
    """F = mean brightness of the image; counts the rows it sees."""

    seen: int = 0

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        self.seen += x.shape[0]
        return x.mean(dim=(1, 2, 3))


def test_layouts_take_semantic_guidance(pipe) -> None:
    layout = Layout("a summer landscape", (Region("snow", box=(0.5, 0, 1, 1)),))
    args = dict(height=64, width=192, num_inference_steps=4, stride=4, sync_weight=0.0, output_type="pt")

    def run(guidance):
        gen = torch.Generator().manual_seed(0)
        return pipe.layout(layout, generator=gen, semantic_guidance=guidance, **args).images

    plain = run(None)
    assert torch.equal(run(Brightness(weight=0.0)), plain)  # weight 0: no shift at all
    guided = Brightness(weight=3000.0)
    brighter = run(guided)
    assert brighter.mean() > plain.mean() + 0.01
    # every step, every (prompt, window) row: the background (left half) and the region (right half) each touch
    # 3 of the 5 windows (8 latent px every 4)
    assert guided.seen == 4 * (3 + 3)
