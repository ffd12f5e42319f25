"""Fast checks of the demo VAE and pixel DDPM recipes on tiny models: learning, exact resume, offline export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMPipeline
from safetensors.torch import load_file

from syncguide.demo.train import ddpm, vae
from syncguide.demo.train.common import make_crops

TINY_VAE = {"block_out_channels": (8, 8, 16), "norm_num_groups": 4, "n_scale": 8, "checkpoint_every": 1}
TINY_DDPM = {"block_out_channels": (8, 16, 16), "norm_num_groups": 4, "checkpoint_every": 1, "warmup": 2}
RUN = {"n_data": 8, "batch_size": 4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Training recipes run on one thread (several threads crawl on a shared, busy CPU); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _overfit(loss_fn, model: torch.nn.Module, steps: int = 8) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        loss = loss_fn(torch.Generator().manual_seed(0))  # same batch, same noise: a fixed objective
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------------------------------- VAE


def test_vae_loss_decreases_on_fixed_batch() -> None:
    config = vae.VAEConfig.from_overrides(**TINY_VAE)
    model = vae.build_vae(config, seed=0)
    x = make_crops(0, 4).images
    losses = _overfit(lambda g: vae.vae_loss(model, x, g, config)[0], model)
    assert losses[-1] < 0.9 * losses[0]


@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vae")
    whole = vae.train(root / "whole", steps=4, **RUN, **TINY_VAE)
    stopped = vae.train(root / "split", steps=4, stop_at=2, **RUN, **TINY_VAE)
    resumed = vae.train(root / "split", steps=4, **RUN, **TINY_VAE)
    return {"root": root, "whole": whole, "stopped": stopped, "resumed": resumed}


def test_vae_resume_is_bit_exact(vae_runs: dict[str, Path]) -> None:
    root = vae_runs["root"]
    assert vae_runs["stopped"] == root / "split" / "checkpoint"
    assert json.loads((root / "split" / "train.json").read_text())["resumed_from"] == 2
    name = "diffusion_pytorch_model.safetensors"
    _assert_same_weights(vae_runs["whole"] / name, vae_runs["resumed"] / name)
    _assert_same_weights(
        root / "whole" / "checkpoint" / "vae.safetensors", root / "split" / "checkpoint" / "vae.safetensors"
    )
    assert vae_runs["whole"].parent.joinpath("train.json").exists()


def test_vae_export_loads_offline_with_scaling_factor(vae_runs: dict[str, Path]) -> None:
    model = AutoencoderKL.from_pretrained(vae_runs["whole"], local_files_only=True)
    summary = json.loads((vae_runs["whole"].parent / "train.json").read_text())
    assert model.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    assert model.config.scaling_factor != pytest.approx(0.18215)
    with torch.no_grad():
        latent = model.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert latent.shape == (1, vae.VAEConfig().latent_channels, 16, 16)


def test_vae_evaluate_and_picture(vae_runs: dict[str, Path]) -> None:
    metrics = vae.evaluate(vae_runs["whole"], n=4)
    assert math.isfinite(metrics["psnr"]) and metrics["psnr"] > 0
    path = vae.save_reconstructions(vae_runs["whole"], vae_runs["root"] / "recon.png", n=2, scale=1)
    assert path.stat().st_size > 0


def test_vae_rejects_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown"):
        vae.train(tmp_path, steps=1, no_such_option=1)


# -------------------------------------------------------------------------------------------------- DDPM


def test_ddpm_loss_decreases_on_fixed_batch() -> None:
    config = ddpm.DDPMConfig.from_overrides(**TINY_DDPM)
    unet = ddpm.build_unet(config, seed=0)
    scheduler = ddpm.make_scheduler()
    x = make_crops(0, 4, size=32).images
    losses = _overfit(lambda g: ddpm.ddpm_loss(unet, scheduler, x, g, config), unet)
    assert losses[-1] < 0.9 * losses[0]


@pytest.fixture(scope="module")
def ddpm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddpm")
    whole = ddpm.train(root / "whole", steps=4, **RUN, **TINY_DDPM)
    ddpm.train(root / "split", steps=4, stop_at=2, **RUN, **TINY_DDPM)
    resumed = ddpm.train(root / "split", steps=4, **RUN, **TINY_DDPM)
    return {"root": root, "whole": whole, "resumed": resumed}


def test_ddpm_resume_is_bit_exact_including_ema(ddpm_runs: dict[str, Path]) -> None:
    root = ddpm_runs["root"]
    assert json.loads((root / "split" / "train.json").read_text())["resumed_from"] == 2
    for name in ("unet.safetensors", "ema.safetensors"):
        _assert_same_weights(root / "whole" / "checkpoint" / name, root / "split" / "checkpoint" / name)
    exported = "unet/diffusion_pytorch_model.safetensors"
    _assert_same_weights(ddpm_runs["whole"] / exported, ddpm_runs["resumed"] / exported)
    # The export holds the EMA weights, which differ from the raw weights.
    ema = load_file(root / "whole" / "checkpoint" / "ema.safetensors")
    raw = load_file(root / "whole" / "checkpoint" / "unet.safetensors")
    out = load_file(ddpm_runs["whole"] / exported)
    assert all(torch.equal(out[k], ema[k]) for k in out)
    assert not all(torch.equal(out[k], raw[k]) for k in out)


def test_ddpm_export_loads_offline(ddpm_runs: dict[str, Path]) -> None:
    pipe = DDPMPipeline.from_pretrained(ddpm_runs["whole"], local_files_only=True)
    assert pipe.unet.config.sample_size == 32
    assert pipe.scheduler.config.num_train_timesteps == 1000
    assert pipe.scheduler.config.beta_schedule == "linear"


def test_ddpm_sample_shape_and_determinism(ddpm_runs: dict[str, Path]) -> None:
    images = ddpm.sample(ddpm_runs["whole"], n=3, seed=5, steps=2)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, ddpm.sample(ddpm_runs["whole"], n=3, seed=5, steps=2))
    path = ddpm.save_samples(images, ddpm_runs["root"] / "samples.png", columns=2, scale=1)
    assert path.stat().st_size > 0


def test_ddpm_evaluate_statistics(ddpm_runs: dict[str, Path]) -> None:
    result = ddpm.evaluate(ddpm_runs["whole"], n=4, steps=2, n_data=45)
    for attribute in ("time", "season"):
        assert sum(result["colour"]["samples"][attribute].values()) == pytest.approx(1.0)
        assert 0 <= result["colour_accuracy"][attribute] <= 1
    assert isinstance(result["covered"], bool)
