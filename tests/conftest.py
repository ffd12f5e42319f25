"""Shared fixtures: tiny random Stable Diffusion pipelines built from config, LPIPS with a random trunk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

    from syncguide import SyncDiffusionPipeline

# One torch thread per test process (pytest-xdist runs one process per core), and for the CLI subprocesses the
# tests start: on a shared 2-core machine two OpenMP threads per process spin against each other (and against
# anyone else's job) and the tiny models run several times slower than on one thread. torch and syncguide are
# imported by the fixtures, not here: pytest-xdist's controller loads this file too and runs no test (their
# imports took it ~10 s before it started the workers). OMP_NUM_THREADS is set before any test module imports torch.
THREADS = int(os.environ.get("SYNCGUIDE_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny epsilon-prediction SD pipeline saved in diffusers format (64 px window)."""
    from syncguide.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_vpred_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, with v-prediction (as SD 2.x 768-v)."""
    from syncguide.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd-v"), prediction_type="v_prediction", seed=1)


def _load(directory: Path) -> SyncDiffusionPipeline:
    from syncguide import SyncDiffusionPipeline

    pipe = SyncDiffusionPipeline.from_pretrained(directory)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def pipe(tiny_dir: Path) -> SyncDiffusionPipeline:
    return _load(tiny_dir)


@pytest.fixture(scope="session")
def vpred_pipe(tiny_vpred_dir: Path) -> SyncDiffusionPipeline:
    return _load(tiny_vpred_dir)


@pytest.fixture(scope="session")
def random_lpips() -> torch.nn.Module:
    """LPIPS-VGG with a random trunk: differentiable and offline; its scores mean nothing."""
    from syncguide.guidance.perceptual import lpips_vgg

    return lpips_vgg(pretrained_trunk=False)
