"""The model as the joint sampler sees it for one run: a backbone with its scheduler, conditioning and CFG."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.models.backbone import Backbone, Conditioning, iterate_rows
from syncguide.parallel import Workers


@dataclass
class WindowDenoiser:
    """Answers ``output`` and ``x0`` for rows of the window stack (k-diffusion's denoiser-wrapper idea).

    ``cond`` and ``positions`` ``(n, 2)`` (each row's window corner in pixels) cover all n rows of the stack;
    ``rows_per_call`` bounds a model call; ``workers`` share the model calls of :meth:`output` (window parallelism,
    :mod:`syncguide.parallel`; default one process).
    """

    backbone: Backbone
    scheduler: SchedulerMixin
    cond: Conditioning
    guidance_scale: float
    rows_per_call: int
    positions: torch.Tensor
    workers: Workers = field(default_factory=Workers)

    def output(self, views: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The guided model output for every row of ``views`` ``(n, C, h, w)``, ``rows_per_call`` per call (each
        process of ``workers`` making its share of the calls)."""
        calls = list(iterate_rows(views.shape[0], self.rows_per_call))
        out = torch.empty_like(views)
        return self.workers.map_rows(lambda k: self.predict(views[calls[k]], t, calls[k]), calls, out)

    def predict(self, x: torch.Tensor, t: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        """The guided model output for ``x``, rows ``rows`` of the stack; differentiable in ``x``."""
        scale = getattr(self.scheduler, "scale_model_input", None)  # flow-matching schedulers have none
        scaled = x if scale is None else scale(x, t)
        return self.backbone.predict(scaled, t, self.cond.select(rows), self.guidance_scale, self.positions[rows])

    def x0(self, x: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-latent prediction of ``x`` from the model ``output``."""
        return self.backbone.x0(self.scheduler, x, output, t)

    def images(self, x: torch.Tensor, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The decoded x0 prediction in [0, 1] of noisy rows ``x`` (rows ``rows`` of the stack); differentiable."""
        return self.backbone.decode(self.x0(x, self.predict(x, t, rows), t))
