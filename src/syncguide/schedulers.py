"""Scheduler choice and the scheduler-independent maths the samplers need (x0 prediction).

All supported schedulers use the variance-preserving parametrisation x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps,
so x0 can be computed from ``alphas_cumprod`` and the model's prediction type whatever the scheduler returns
(DPM-Solver, UniPC and PNDM do not return ``pred_original_sample``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.errors import SettingError

# name -> (class, extra config): DDIM is the papers' scheduler and our default.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
    "pndm": (PNDMScheduler, {}),
}
SUPPORTED = tuple(cls for cls, _ in SCHEDULERS.values())
# Flow matching (FLUX.1, SD3): x_t = (1 - sigma) x0 + sigma * noise, the model predicts noise - x0.
FLOW_SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "flow-euler": (FlowMatchEulerDiscreteScheduler, {}),
}


def is_flow(scheduler: SchedulerMixin) -> bool:
    """Whether ``scheduler`` is a flow-matching scheduler (FLUX.1, SD3) rather than a variance-preserving one."""
    return isinstance(scheduler, tuple(cls for cls, _ in FLOW_SCHEDULERS.values()))


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """Build scheduler ``name`` (a key of :data:`SCHEDULERS` or :data:`FLOW_SCHEDULERS`) from another scheduler's
    ``config``."""
    table = {**SCHEDULERS, **FLOW_SCHEDULERS}
    if name not in table:
        raise ValueError(f"scheduler must be one of {', '.join(table)}; got {name!r}")
    cls, extra = table[name]
    return cls.from_config(config, **extra)


def check_scheduler(scheduler: SchedulerMixin, flow: bool = False) -> None:
    """Raise ValueError unless ``scheduler`` is one of the variance-preserving schedulers we support (``flow``: one
    of the flow-matching ones, for FLUX.1 and SD3)."""
    supported = tuple(cls for cls, _ in FLOW_SCHEDULERS.values()) if flow else SUPPORTED
    if not isinstance(scheduler, supported):
        names = ", ".join(cls.__name__ for cls in supported)
        raise ValueError(f"scheduler must be one of {names}; got {type(scheduler).__name__}")


def check_steps(scheduler: SchedulerMixin, steps: int) -> None:
    """SettingError ``num_inference_steps`` unless ``scheduler`` can run ``steps`` steps within its training
    timesteps (e.g. DDIM with ``steps_offset`` 1 runs at most 999 of 1000; PNDM needs at least 2)."""
    trial = type(scheduler).from_config(scheduler.config)
    name = type(scheduler).__name__
    if steps < 1:
        raise SettingError("num_inference_steps", f"must be >= 1; got {steps}")
    if is_flow(scheduler):  # sigmas are continuous: any count up to the training timesteps
        most = int(scheduler.config.num_train_timesteps)
        if steps > most:
            raise SettingError("num_inference_steps", f"must fit {name}'s {most} training timesteps; got {steps}")
        return
    if not _runs(trial, steps):  # the scheduler's own refusal (too many steps, too few for PNDM) is the rule
        fewest = next((n for n in range(steps + 1, 21) if _runs(trial, n)), None)
        most = len(trial.alphas_cumprod)
        rule = f"must be >= {fewest} for {name}" if fewest else f"must fit {name}'s {most} training timesteps"
        raise SettingError("num_inference_steps", f"{rule}; got {steps}")
    limit = len(trial.alphas_cumprod)
    if len(trial.timesteps) == 0 or int(trial.timesteps.max()) >= limit or int(trial.timesteps.min()) < 0:
        raise SettingError(
            "num_inference_steps", f"must fit {type(scheduler).__name__}'s {limit} training timesteps; got {steps}"
        )


def _runs(scheduler: SchedulerMixin, steps: int) -> bool:
    try:
        scheduler.set_timesteps(steps)
    except Exception:  # numpy broadcasting, ValueError: the scheduler's own ways of saying no
        return False
    return True


def predict_x0(
    scheduler: SchedulerMixin, sample: torch.Tensor, model_output: torch.Tensor, timestep: torch.Tensor | int
) -> torch.Tensor:
    """Clean-sample prediction x0 from a noisy ``sample`` x_t and the model's output at ``timestep``.

    Supports prediction types ``epsilon``, ``v_prediction`` and ``sample``, and flow matching (x0 = x_t -
    sigma_t * v); differentiable in both inputs.
    """
    if is_flow(scheduler):
        return sample - flow_sigma(scheduler, timestep).to(device=sample.device, dtype=sample.dtype) * model_output
    abar = scheduler.alphas_cumprod[int(timestep)].to(device=sample.device, dtype=sample.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()
    if kind == "v_prediction":
        return abar.sqrt() * sample - (1 - abar).sqrt() * model_output
    if kind == "sample":
        return model_output
    raise ValueError(f"prediction_type must be epsilon, v_prediction or sample; got {kind!r}")


def shift_score(
    scheduler: SchedulerMixin, model_output: torch.Tensor, grad: torch.Tensor, timestep: torch.Tensor | int
) -> torch.Tensor:
    """Model output with the noise prediction shifted as eps' = eps - sqrt(1 - abar_t) * grad (DDIM-form guidance).

    ``grad`` is grad_{x_t} of the objective; the shift is expressed in the model's prediction type (epsilon,
    v_prediction, sample) so that any scheduler can step it. Flow matching (noise std sigma, signal 1 - sigma):
    eps' = eps - sigma * grad with x_t fixed is v' = v - sigma / (1 - sigma) * grad; at sigma = 1 (pure noise, x0
    undefined by x_t) there is no shift.
    """
    if is_flow(scheduler):
        sigma = flow_sigma(scheduler, timestep).to(device=model_output.device, dtype=torch.float32)
        factor = sigma / (1 - sigma) if float(1 - sigma) > 1e-3 else torch.zeros_like(sigma)
        return (model_output.float() - factor * grad.float()).to(model_output.dtype)
    abar = scheduler.alphas_cumprod[int(timestep)].to(device=model_output.device, dtype=torch.float32)
    delta = -(1 - abar).sqrt() * grad.float()  # the change of eps
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        shifted = model_output.float() + delta
    elif kind == "v_prediction":
        shifted = model_output.float() + delta / abar.sqrt()
    elif kind == "sample":
        shifted = model_output.float() - (1 - abar).sqrt() / abar.sqrt() * delta
    else:
        raise ValueError(f"prediction_type must be epsilon, v_prediction or sample; got {kind!r}")
    return shifted.to(model_output.dtype)


def add_noise(scheduler: SchedulerMixin, x0: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """x_t of clean ``x0`` with ``noise`` at ``timestep``: the scheduler's forward process (``add_noise``; flow
    matching: ``(1 - sigma) x0 + sigma * noise``)."""
    if is_flow(scheduler):
        sigma = flow_sigma(scheduler, timestep).to(device=x0.device, dtype=x0.dtype)
        return (1 - sigma) * x0 + sigma * noise.to(x0.dtype)
    return scheduler.add_noise(x0, noise, timestep.reshape(1))


def flow_sigma(scheduler: SchedulerMixin, timestep: torch.Tensor | int) -> torch.Tensor:
    """sigma_t of a flow-matching scheduler at ``timestep`` (one of its ``timesteps``, set beforehand)."""
    timesteps = scheduler.timesteps.to(torch.float32)
    index = int(torch.argmin((timesteps - float(timestep)).abs()))
    return scheduler.sigmas[index]


LEARNED = ("learned", "learned_range")


def learns_variance(scheduler: SchedulerMixin) -> bool:
    """Whether ``scheduler`` reads the step variance from the model (``variance_type`` learned / learned_range)."""
    return scheduler.config.get("variance_type", None) in LEARNED


def check_variance(scheduler: SchedulerMixin, in_channels: int, out_channels: int) -> None:
    """Raise ValueError unless the UNet's output fits the scheduler's ``variance_type``.

    The rule: a learned variance (``learned`` / ``learned_range``) needs ``out_channels = 2 * in_channels`` (the
    noise prediction, then the predicted variance, as OpenAI's ADM models); a DDPMScheduler with a fixed variance
    needs ``out_channels = in_channels``. Other schedulers (DDIM, ...) use the first half of a 2x output.
    """
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"UNet out_channels must be in_channels or 2 * in_channels; got {out_channels}, {in_channels}")
    kind = scheduler.config.get("variance_type", None)
    if kind in LEARNED and out_channels != 2 * in_channels:
        raise ValueError(
            f"variance_type {kind!r} needs a UNet with out_channels = 2 * in_channels (the predicted variance); "
            f"got out_channels = in_channels = {in_channels}"
        )
    if kind not in LEARNED and out_channels == 2 * in_channels and isinstance(scheduler, DDPMScheduler):
        raise ValueError(
            f"a UNet with out_channels = 2 * in_channels ({out_channels}) predicts its variance: the DDPMScheduler "
            f"needs variance_type 'learned' or 'learned_range', got {kind!r}"
        )


def split_output(model_output: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(prediction, predicted variance or None)`` of a model output ``(B, C or 2C, H, W)`` for a sample ``(B, C,
    H, W)``: a 2C-channel output is split into halves, as diffusers' DDPMScheduler does.

    ValueError for any other channel count (it would broadcast silently against the sample).
    """
    channels = sample.shape[1]
    if model_output.shape[1] == 2 * channels:
        prediction, variance = torch.split(model_output, channels, dim=1)
        return prediction, variance
    if model_output.shape[1] != channels:
        raise ValueError(
            f"the model output must have the sample's {channels} channels or twice as many (with a predicted "
            f"variance); got {model_output.shape[1]}"
        )
    return model_output, None


def step_variance(
    scheduler: SchedulerMixin, timestep: int, prev_timestep: int, predicted_variance: torch.Tensor | None = None
) -> float | torch.Tensor:
    """Variance Sigma of the ancestral step t -> prev_t, from ``alphas_cumprod`` (``prev_timestep`` < 0: last step).

    ``variance_type`` "fixed_large" gives beta_t; "learned" the model's ``predicted_variance`` ``(B, C, H, W)``
    itself; "learned_range" exp(frac log beta_t + (1 - frac) log posterior) with frac = (v + 1) / 2 of the model's
    ``predicted_variance`` v (as diffusers' DDPMScheduler._get_variance computes them; float32 tensors of its
    shape); otherwise the posterior variance (1 - abar_prev) / (1 - abar_t) * beta_t, with beta_t = 1 - abar_t /
    abar_prev (respaced steps included). Fixed types return a float.
    """
    abar = scheduler.alphas_cumprod
    abar_t = abar[int(timestep)].double()
    abar_prev = abar[int(prev_timestep)].double() if prev_timestep >= 0 else torch.tensor(1.0, dtype=torch.float64)
    beta = 1 - abar_t / abar_prev
    posterior = (1 - abar_prev) / (1 - abar_t) * beta
    kind = scheduler.config.get("variance_type", "fixed_small")
    if kind in LEARNED:
        if predicted_variance is None:
            raise ValueError(f"variance_type {kind!r} needs the model's predicted variance")
        if kind == "learned":
            return predicted_variance.float()
        frac = (predicted_variance.float() + 1) / 2
        low, high = (torch.log(v).float().to(frac.device) for v in (posterior.clamp(min=1e-20), beta))
        return torch.exp(frac * high + (1 - frac) * low)
    return float(beta) if kind == "fixed_large" else float(posterior)


def q_sample(x0: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward noising q(x_t | x_0): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, computed in float32.

    ``x0`` ``(B, C, H, W)``; ``t`` scalar or ``(B,)`` training timesteps; ``alphas_cumprod`` ``(T,)``; ``noise``
    of ``x0``'s shape (moved to its device). Returns x_t in ``x0``'s dtype and device.
    """
    abar = alphas_cumprod.to(x0.device, torch.float32)[t.to(x0.device).long()].reshape(-1, 1, 1, 1)
    noise = noise.to(x0.device, torch.float32)
    return (abar.sqrt() * x0.float() + (1 - abar).sqrt() * noise).to(x0.dtype)


def step_arguments(scheduler: SchedulerMixin, generator: torch.Generator | None, **options) -> dict:
    """The keyword arguments of ``scheduler.step`` among ``generator`` and ``options`` (e.g. DDIM's ``eta``).

    Not every scheduler's ``step`` takes a generator (UniPC and PNDM do not).
    """
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"generator": generator, **options}
    return {k: v for k, v in kwargs.items() if k in accepted}
