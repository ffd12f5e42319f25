"""Deterministic, resumable training machinery shared by the demo recipes and ``syncguide finetune-clip``.

Batch k is drawn with a generator seeded from (seed, k), so a run resumed at step k continues exactly as an
uninterrupted one. Checkpoints hold weights as safetensors and the optimizer state through
``torch.save``/``torch.load(weights_only=True)``; they are written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random generator of training step ``step`` (independent of how the run was split); any seed in
    [0, 2^64 - 1] (the generator's seed wraps modulo 2^64)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**64)


class CheckpointMismatch(ValueError):
    """A checkpoint that cannot be resumed: made with other settings, unreadable, or past the steps asked for."""


class DivergedError(ArithmeticError):
    """Training produced a NaN or infinite loss at ``step`` (0-based): nothing more is saved."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"the loss became {loss} at training step {step + 1}")
        self.step = step
        self.loss = loss


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` random row indices in ``[0, n)``."""
    return torch.randint(0, n, (batch_size,), generator=generator)


@dataclass
class Checkpoint:
    """A training checkpoint directory: ``<name>.safetensors`` per module, ``optimizer.pt``, ``state.json``."""

    directory: Path

    def exists(self) -> bool:
        return (self.directory / "state.json").is_file()

    def save(
        self,
        step: int,
        modules: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer,
        extra: dict | None = None,
    ) -> None:
        """Write atomically: into a temporary sibling directory, then swap it in."""
        tmp = self.directory.with_name(self.directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, module in modules.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}))
        old = self.directory.with_name(self.directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.directory.exists():
            os.replace(self.directory, old)
        os.replace(tmp, self.directory)
        shutil.rmtree(old, ignore_errors=True)

    def state(self) -> dict:
        """The saved ``state.json`` (``step`` and extras) without loading any weights; CheckpointMismatch if it
        cannot be read."""
        try:
            state = json.loads((self.directory / "state.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CheckpointMismatch(f"checkpoint in {self.directory} cannot be read ({error})") from None
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise CheckpointMismatch(f"checkpoint in {self.directory} has no step in its state.json")
        return state

    def load(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
        """Restore modules and optimizer; returns the saved state (``step`` and extras)."""
        for name, module in modules.items():
            load_model(module, str(self.directory / f"{name}.safetensors"))
        optimizer.load_state_dict(torch.load(self.directory / "optimizer.pt", weights_only=True))
        return json.loads((self.directory / "state.json").read_text())


def check_resume(checkpoint: Checkpoint, settings: dict, resume: bool, steps: int | None = None) -> int:
    """The step a run would start from (0 without ``resume`` or a checkpoint), read from the checkpoint's
    ``state.json`` alone, before anything loads. CheckpointMismatch if it was made with other ``settings`` or is
    already past ``steps``."""
    if not (resume and checkpoint.exists()):
        return 0
    state = checkpoint.state()
    saved = {k: state.get(k) for k in settings}
    if saved != settings:
        raise CheckpointMismatch(f"checkpoint in {checkpoint.directory} has settings {saved}, not {settings}")
    if steps is not None and state["step"] > steps:
        raise CheckpointMismatch(
            f"checkpoint in {checkpoint.directory} is at step {state['step']}, past the {steps} steps asked for"
        )
    return state["step"]


def resume_step(
    checkpoint: Checkpoint,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    settings: dict,
    resume: bool,
) -> int:
    """The step to start from: the checkpoint's if ``resume`` and it exists (CheckpointMismatch, a ValueError, if it
    was made with other ``settings``), else 0 after removing any stale checkpoint."""
    if resume and checkpoint.exists():
        state = checkpoint.load(modules, optimizer)
        saved = {k: state.get(k) for k in settings}
        if saved != settings:
            raise CheckpointMismatch(f"checkpoint in {checkpoint.directory} has settings {saved}, not {settings}")
        return state["step"]
    if checkpoint.directory.exists():
        shutil.rmtree(checkpoint.directory)
    return 0


def train_loop(
    step_fn: Callable[[int], float],
    start: int,
    total: int,
    save: Callable[[int], None],
    every: int = 500,
    desc: str = "training",
) -> list[float]:
    """Run ``step_fn(k)`` for k in ``[start, total)`` with a progress bar; ``save(k + 1)`` every ``every`` steps
    and at the end. Returns the losses of the steps run."""
    losses = []
    bar = tqdm(range(start, total), desc=desc, initial=start, total=total)
    for k in bar:
        losses.append(step_fn(k))
        bar.set_postfix(loss=f"{final_loss(losses):.4f}")
        if (k + 1) % every == 0 or k + 1 == total:
            save(k + 1)
    return losses


@contextmanager
def timer() -> Iterator[dict]:
    """``with timer() as t: ...`` then ``t["seconds"]``."""
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def final_loss(losses: list[float], last: int = 50) -> float | None:
    """Mean of the ``last`` losses (None when no step ran): the smoothed loss a run ended with."""
    return float(np.mean(losses[-last:])) if losses else None
