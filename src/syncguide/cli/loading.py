"""Resolve ``--model`` and ``--device`` into a loaded pipeline, with one-line errors for bad input.

``check_model`` and ``resolve_device`` are the library's (:mod:`syncguide.hub`, :mod:`syncguide.devices`): their
:class:`~syncguide.errors.SettingError` becomes the one-line ``--model`` / ``--device`` error. The kind of model
(:mod:`syncguide.modelkind`) is checked from its files before any weight loads.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from syncguide.devices import resolve_device
from syncguide.errors import UsageError
from syncguide.hub import check_model
from syncguide.modelkind import DESCRIPTIONS, PANORAMA_KINDS, UNCONDITIONAL
from syncguide.models.families import SUPPORTED
from syncguide.pipeline import SyncDiffusionPipeline

__all__ = ["check_model", "load_model", "load_pipeline", "resolve_device"]

STABLE_DIFFUSION_NEEDS = (
    f"expected a pipeline of a supported family: {SUPPORTED} (for an unconditional DDPM pipeline use syncguide"
    " generate)"
)
UNCONDITIONAL_NEEDS = (
    f"generate needs {DESCRIPTIONS[UNCONDITIONAL]} (for a Stable Diffusion pipeline use syncguide panorama)"
)


def load_pipeline(spec: str, dtype: torch.dtype, device: torch.device) -> SyncDiffusionPipeline:
    """Load a panorama pipeline (SD 1.x/2.x, SDXL, FLUX.1, SD3) as its :class:`SyncDiffusionPipeline` on
    ``device``."""
    what, kinds = "a panorama pipeline", PANORAMA_KINDS
    pipe = load_model(SyncDiffusionPipeline, spec, what, kinds, STABLE_DIFFUSION_NEEDS)
    return pipe.to(device, dtype)


def load_model(cls: type, spec: str, what: str, kinds: Collection[str] | None = None, needs: str | None = None) -> Any:
    """``cls.from_pretrained(spec)`` (a hub id or directory checked first by :func:`check_model`, of one of
    ``kinds`` if given); any loading failure is a one-line UsageError."""
    check_model(spec, "model", kinds, needs)
    local = Path(spec).expanduser()
    try:
        pipe = cls.from_pretrained(str(local) if local.exists() else spec)
    except Exception as error:  # any loading failure is bad input to report in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--model: cannot load {spec} as {what}: {first}") from None
    pipe.set_progress_bar_config(leave=False)
    return pipe
