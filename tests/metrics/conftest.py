"""Fixtures for the metrics: small random images and panoramas, a tiny random CLIP, the demo networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from syncguide.demo.networks import demo_networks
from syncguide.metrics import MetricNetworks
from syncguide.models.tiny import save_tiny_clip

CROP = 32


@pytest.fixture
def panoramas() -> torch.Tensor:
    """Two random panoramas of 3 crops, ``(2, 3, 32, 96)`` in [0, 1]."""
    return torch.rand(2, 3, CROP, 3 * CROP, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def repeated() -> torch.Tensor:
    """Two panoramas each made of one crop repeated 3 times: every pair of crops is identical."""
    crop = torch.rand(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(1))
    return crop.repeat(1, 1, 1, 3)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("metrics-tiny-clip"))


@pytest.fixture(scope="session")
def demo() -> MetricNetworks:
    return demo_networks()
