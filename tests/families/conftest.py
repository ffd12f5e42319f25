"""Fixtures: tiny random SDXL, FLUX.1-dev, FLUX.1-schnell and SD3 pipelines saved in diffusers format (16 px window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncguide.models.tiny_families import save_tiny_family


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``StableDiffusionXLPipeline`` (two CLIP encoders, ``text_time`` UNet, Euler)."""
    return save_tiny_family("sdxl", tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX.1-dev-like ``FluxPipeline`` (guidance embedding, dynamic shifting)."""
    return save_tiny_family("flux", tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="session")
def flux_schnell_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX.1-schnell-like ``FluxPipeline`` (no guidance embedding, no shift)."""
    return save_tiny_family("flux-schnell", tmp_path_factory.mktemp("tiny-flux-schnell"))


@pytest.fixture(scope="session")
def sd3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``StableDiffusion3Pipeline`` with its T5 encoder."""
    return save_tiny_family("sd3", tmp_path_factory.mktemp("tiny-sd3"))
