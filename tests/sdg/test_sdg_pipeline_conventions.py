"""SemanticGuidancePipeline follows diffusers' conventions: arguments, alias, output types, step-end callback."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import syncguide
from syncguide.errors import SettingError
from syncguide.guidance.semantic import Guidance
from syncguide.schedulers import predict_x0
from syncguide.sdg_pipeline import SemanticGuidancePipeline


class Direction(Guidance):
    """F = sum(x * direction): its gradient is ``direction`` (times the weight)."""

    def objective(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        direction = torch.linspace(-1, 1, x[0].numel()).reshape(1, *x.shape[1:]).to(x.dtype)
        return (x * direction).flatten(1).sum(-1)


@pytest.fixture(scope="module")
def pipe(tiny_ddpm_dir: Path) -> SemanticGuidancePipeline:
    pipe = SemanticGuidancePipeline.from_pretrained(tiny_ddpm_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ddim(pipe: SemanticGuidancePipeline) -> SemanticGuidancePipeline:
    ddim = SemanticGuidancePipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    ddim.set_progress_bar_config(disable=True)
    return ddim


def _latents(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_exported_and_loaded_with_the_checkpoints_scheduler(pipe) -> None:
    assert syncguide.SemanticGuidancePipeline is SemanticGuidancePipeline
    assert "SemanticGuidancePipeline" in syncguide.__all__
    assert type(pipe.scheduler) is DDPMScheduler  # the default the from_pretrained docstring names
    assert "default scheduler" in SemanticGuidancePipeline.from_pretrained.__doc__


def test_only_batch_size_is_positional(pipe) -> None:
    with pytest.raises(TypeError):
        pipe(2, 10)
    with pytest.raises(TypeError, match="positional"):
        pipe(2, None)  # a generator of None would be accepted positionally
    params = list(inspect.signature(pipe.__call__).parameters.values())
    assert params[0].name == "batch_size" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    images = pipe(2, num_inference_steps=1, latents=_latents(), output_type="pt").images
    assert images.shape == (2, 3, 16, 16)


def test_deprecated_guidance_alias_warns_and_gives_the_same_images(pipe) -> None:
    common = {"num_inference_steps": 3, "output_type": "pt", "latents": _latents()}
    new = pipe(2, generator=torch.Generator().manual_seed(1), semantic_guidance=Direction(5.0), **common).images
    with pytest.warns(FutureWarning, match="semantic_guidance"):
        old = pipe(2, generator=torch.Generator().manual_seed(1), guidance=Direction(5.0), **common).images
    plain = pipe(2, generator=torch.Generator().manual_seed(1), **common).images
    assert torch.equal(new, old) and not torch.equal(new, plain)
    with pytest.raises(ValueError, match="not both"), pytest.warns(FutureWarning):
        pipe(2, semantic_guidance=Direction(), guidance=Direction(), **common)


def test_unknown_callback_tensor_is_refused_before_any_work(pipe) -> None:
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
            pipe(1, num_inference_steps=2, callback_on_step_end=lambda *a: {},
                 callback_on_step_end_tensor_inputs=["latents", "noise_pred"])  # fmt: skip
    finally:
        handle.remove()
    assert calls == []


def test_callback_sees_latents_and_denoised_and_may_replace_latents(pipe) -> None:
    seen = []

    def callback(p, i, t, kwargs):
        assert p is pipe
        seen.append((i, int(t), kwargs["latents"].clone(), kwargs["denoised"].clone()))
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == 2 else {}

    latents = _latents()
    out = pipe(2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, latents=latents, output_type="pt",
               callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "denoised"])  # fmt: skip
    assert [(i, t) for i, t, _, _ in seen] == list(enumerate(int(t) for t in pipe.scheduler.timesteps))
    assert all(d.shape == latents.shape and x.shape == latents.shape for _, _, x, d in seen)
    # denoised at step 0 is the x0 prediction from the initial latents
    t0 = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        eps = pipe.unet(latents, t0).sample
    torch.testing.assert_close(seen[0][3], predict_x0(pipe.scheduler, latents, eps, t0))
    torch.testing.assert_close(out.images, torch.full_like(out.images, 0.5))  # the replaced final latents


def test_eta_acts_on_ddim_only_when_positive_and_is_reproducible(pipe) -> None:
    ddim = _ddim(pipe)

    def run(eta: float, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return ddim(2, generator=generator, num_inference_steps=4, eta=eta, latents=_latents(), output_type="pt").images

    assert torch.equal(run(0.0, 1), run(0.0, 2))  # eta 0: deterministic, the generator is not drawn from
    assert torch.equal(run(0.7, 1), run(0.7, 1))
    assert not torch.equal(run(0.7, 1), run(0.7, 2))
    assert not torch.equal(run(0.7, 1), run(0.0, 1))


def test_output_types_and_return_dict(pipe) -> None:
    def common() -> dict:  # DDPM draws step noise: the same generator state for every run
        return {"num_inference_steps": 2, "latents": _latents(), "generator": torch.Generator().manual_seed(4)}

    pt = pipe(2, output_type="pt", **common()).images
    np_images = pipe(2, output_type="np", **common()).images
    (as_tuple,) = pipe(2, output_type="pt", return_dict=False, **common())
    assert torch.equal(as_tuple, pt)
    assert np_images.shape == (2, 16, 16, 3)
    torch.testing.assert_close(torch.from_numpy(np_images), pt.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="output_type"):
        pipe(2, output_type="latent", **common())


def test_pt_output_keeps_the_samples_dtype(pipe) -> None:
    half = SemanticGuidancePipeline(unet=pipe.unet.to(torch.bfloat16), scheduler=pipe.scheduler)
    half.set_progress_bar_config(disable=True)
    try:
        images = half(2, num_inference_steps=2, latents=_latents().bfloat16(), output_type="pt").images
        np_images = half(2, num_inference_steps=2, latents=_latents().bfloat16(), output_type="np").images
    finally:
        pipe.unet.to(torch.float32)
    assert images.dtype == torch.bfloat16 and images.device == _latents().device
    assert np_images.dtype == "float32"


@pytest.mark.parametrize(
    ("arguments", "setting"),
    [({"batch_size": 0}, "batch_size"), ({"num_inference_steps": 0}, "num_inference_steps"),
     ({"num_inference_steps": 2.5}, "num_inference_steps"), ({"eta": -0.1}, "eta"), ({"eta": float("nan")}, "eta"),
     ({"output_type": "latent"}, "output_type"), ({"latents": torch.zeros(3, 3, 16, 16)}, "latents"),
     ({"latents": torch.zeros(2, 3, 8, 8)}, "latents"),
     ({"callback_on_step_end_tensor_inputs": ["noise_pred"]}, "callback_on_step_end_tensor_inputs")],
)  # fmt: skip
def test_bad_arguments_are_setting_errors_naming_the_argument_before_any_work(pipe, arguments, setting) -> None:
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(SettingError) as error:
            pipe(**{"batch_size": 2, "num_inference_steps": 2, "output_type": "pt", **arguments})
    finally:
        handle.remove()
    assert error.value.setting == setting and str(error.value).startswith(setting)
    assert "got" in error.value.rule  # the rule quotes the value
    assert calls == []


def test_deprecation_warning_points_at_the_caller(pipe) -> None:
    with pytest.warns(FutureWarning) as record:
        pipe(2, num_inference_steps=1, guidance=Direction(), latents=_latents(), output_type="pt")
    assert [Path(w.filename).name for w in record] == [Path(__file__).name]
