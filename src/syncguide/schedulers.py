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
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# name -> (class, extra config): DDIM is the papers' scheduler and our default.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
    "pndm": (PNDMScheduler, {}),
}
SUPPORTED = tuple(cls for cls, _ in SCHEDULERS.values())


def make_scheduler(name: str, config: Any) -> SchedulerMixin:
    """Build scheduler ``name`` (a key of :data:`SCHEDULERS`) from another scheduler's ``config``."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {name!r}")
    cls, extra = SCHEDULERS[name]
    return cls.from_config(config, **extra)


def check_scheduler(scheduler: SchedulerMixin) -> None:
    """Raise ValueError unless ``scheduler`` is one of the variance-preserving schedulers we support."""
    if not isinstance(scheduler, SUPPORTED):
        names = ", ".join(cls.__name__ for cls in SUPPORTED)
        raise ValueError(f"scheduler must be one of {names}; got {type(scheduler).__name__}")


def predict_x0(
    scheduler: SchedulerMixin, sample: torch.Tensor, model_output: torch.Tensor, timestep: torch.Tensor | int
) -> torch.Tensor:
    """Clean-sample prediction x0 from a noisy ``sample`` x_t and the model's output at ``timestep``.

    Supports prediction types ``epsilon``, ``v_prediction`` and ``sample``; differentiable in both inputs.
    """
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
    v_prediction, sample) so that any scheduler can step it.
    """
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


def step_variance(scheduler: SchedulerMixin, timestep: int, prev_timestep: int) -> float:
    """Sigma of the ancestral step t -> prev_t, from ``alphas_cumprod`` (``prev_timestep`` < 0: the final step).

    ``variance_type`` "fixed_large" gives beta_t; otherwise the posterior variance
    (1 - abar_prev) / (1 - abar_t) * beta_t, with beta_t = 1 - abar_t / abar_prev (respaced steps included).
    """
    abar = scheduler.alphas_cumprod
    abar_t = float(abar[int(timestep)])
    abar_prev = float(abar[int(prev_timestep)]) if prev_timestep >= 0 else 1.0
    beta = 1 - abar_t / abar_prev
    if scheduler.config.get("variance_type", "fixed_small") == "fixed_large":
        return beta
    return (1 - abar_prev) / (1 - abar_t) * beta


def step_arguments(scheduler: SchedulerMixin, generator: torch.Generator | None, **options) -> dict:
    """The keyword arguments of ``scheduler.step`` among ``generator`` and ``options`` (e.g. DDIM's ``eta``).

    Not every scheduler's ``step`` takes a generator (UniPC and PNDM do not).
    """
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"generator": generator, **options}
    return {k: v for k, v in kwargs.items() if k in accepted}
