"""Fixtures for SDG: a tiny random unconditional DDPM and tiny random CLIP towers (transformers and open_clip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from syncguide.models.clip_towers import CLIPTower, load_transformers_clip
from syncguide.models.noise_aware import NoiseAwareCLIP
from syncguide.models.tiny import save_tiny_clip, save_tiny_ddpm, tiny_open_clip

TOWERS = ("transformers", "open_clip-resnet", "open_clip-vit")


@pytest.fixture(scope="session")
def tiny_ddpm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_ddpm(tmp_path_factory.mktemp("tiny-ddpm"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def make_tower(kind: str, clip_dir: Path) -> CLIPTower:
    if kind == "transformers":
        return load_transformers_clip(clip_dir)
    return tiny_open_clip(kind.split("-")[1])


@pytest.fixture(params=TOWERS)
def tower(request: pytest.FixtureRequest, tiny_clip_dir: Path) -> CLIPTower:
    return make_tower(request.param, tiny_clip_dir)


def _randomize(encoder: NoiseAwareCLIP, seed: int = 0, scale: float = 0.1) -> NoiseAwareCLIP:
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        last = encoder.time_mlp[-1]
        last.weight.normal_(0, scale / last.weight.shape[1] ** 0.5)
        last.bias.normal_(0, scale)
    return encoder


@pytest.fixture
def randomize_time_mlp():
    """``f(encoder)``: give the zero-initialised last layer random weights, as after fine-tuning."""
    return _randomize


@pytest.fixture
def noise_aware(tower: CLIPTower) -> NoiseAwareCLIP:
    """The tower wrapped with a (randomised, so non-trivial) timestep conditioning."""
    return _randomize(NoiseAwareCLIP(tower))
