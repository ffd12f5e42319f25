"""Resolve ``--model`` and ``--device`` into a loaded pipeline, with one-line errors for bad input.

``check_model`` and ``resolve_device`` are the library's (:mod:`syncguide.hub`, :mod:`syncguide.devices`): their
:class:`~syncguide.errors.SettingError` becomes the one-line ``--model`` / ``--device`` error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from syncguide.devices import resolve_device
from syncguide.errors import UsageError
from syncguide.hub import check_model
from syncguide.pipeline import SyncDiffusionPipeline

__all__ = ["check_model", "load_model", "load_pipeline", "resolve_device"]


def load_pipeline(spec: str, dtype: torch.dtype, device: torch.device) -> SyncDiffusionPipeline:
    """Load a Stable Diffusion pipeline as a :class:`SyncDiffusionPipeline` on ``device``."""
    pipe = load_model(SyncDiffusionPipeline, spec, "a Stable Diffusion pipeline")
    return pipe.to(device, dtype)


def load_model(cls: type, spec: str, what: str) -> Any:
    """``cls.from_pretrained(spec)`` (a checked hub id or directory); any failure is a one-line UsageError."""
    check_model(spec)
    local = Path(spec).expanduser()
    try:
        pipe = cls.from_pretrained(str(local) if local.exists() else spec)
    except Exception as error:  # any loading failure is bad input to report in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--model: cannot load {spec} as {what}: {first}") from None
    pipe.set_progress_bar_config(leave=False)
    return pipe
