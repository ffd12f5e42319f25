"""Resolve ``--model`` and ``--device`` into a loaded pipeline, with one-line errors for bad input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from syncguide.errors import UsageError
from syncguide.pipeline import SyncDiffusionPipeline

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model(spec: str) -> None:
    """Raise UsageError unless ``spec`` is a diffusers pipeline directory or has the form of a hub id."""
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise UsageError(f"--model: {spec} is not a diffusers pipeline directory (no model_index.json)")
    elif not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise UsageError(f"--model: {spec} does not exist (give a local directory or a hub id like org/name)")


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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be a device torch knows."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: must be cpu, cuda, cuda:N, mps or auto; got {name!r}") from None
