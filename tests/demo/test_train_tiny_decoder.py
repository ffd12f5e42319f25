"""The bundled tiny decoder (fast sync mode's gradient-path decoder for the demo latents) and its recipe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from safetensors.torch import load_file

from syncguide import registry
from syncguide.cli.main import main
from syncguide.demo.bundled import bundled
from syncguide.demo.train import RECIPES, recipe, tiny_decoder
from syncguide.demo.train.common import make_crops
from syncguide.models.sd import vae_decode
from syncguide.training import CheckpointMismatch

TINY = {"channels": 8, "num_decoder_blocks": (1, 1, 1), "checkpoint_every": 1, "warmup": 1}
RUN = {"n_data": 8, "batch_size": 4}
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Training recipes run on one thread (several threads crawl on a shared, busy CPU); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def bundled_dir() -> Path:
    return Path(registry.lookup("model", "demo-tiny-decoder")())


def _card_metrics(model_dir: Path) -> dict:
    text = (model_dir / "README.md").read_text()
    return json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------------------------------ bundled model


def test_bundled_tiny_decoder_is_registered_small_and_upsamples_4x(bundled_dir: Path) -> None:
    assert bundled_dir == bundled("sd").parent / "tiny-decoder"
    assert (bundled_dir / WEIGHTS).stat().st_size < 2**20
    assert "Measured quality" in (bundled_dir / "README.md").read_text()
    tiny = AutoencoderTiny.from_pretrained(bundled_dir, local_files_only=True).eval()
    assert tiny.config.scaling_factor == 1.0 and not tiny.config.shift_factor
    assert tiny.config.latent_channels == 8
    assert sum(p.numel() for p in tiny.decoder.parameters()) < 300_000
    with torch.no_grad():
        assert tiny.decode(torch.randn(2, 8, 5, 7)).sample.shape == (2, 3, 20, 28)


def test_bundled_tiny_decoder_imitates_the_full_demo_decoder(bundled_dir: Path) -> None:
    """Through the sync path's ``vae_decode``, on fresh crops: close to the full decoder (a regression check 4 dB
    under the card's mean over 1000 crops: the mean over 24 crops varies by a few dB with the seed; 28.2 dB here
    when bundled), closer to it than to the images."""
    tiny = AutoencoderTiny.from_pretrained(bundled_dir).eval()
    vae = AutoencoderKL.from_pretrained(bundled("sd") / "vae").eval()
    images = make_crops(4321, 24).images
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor
        fast, full = vae_decode(tiny, latents, 0, 4), vae_decode(vae, latents, 0, 4)
    assert fast.shape == full.shape == images.shape
    vs_full = tiny_decoder.psnr(fast * 2 - 1, full * 2 - 1).mean().item()
    assert vs_full > _card_metrics(bundled_dir)["psnr_vs_full"] - 4
    assert vs_full > tiny_decoder.psnr(fast * 2 - 1, images).mean().item()


def test_the_tiny_decoder_gives_the_sync_loss_a_gradient(bundled_dir: Path) -> None:
    tiny = AutoencoderTiny.from_pretrained(bundled_dir).eval().requires_grad_(False)
    latents = torch.randn(1, 8, 16, 16, requires_grad=True)
    vae_decode(tiny, latents, 2, 4).mean().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ recipe


def test_recipe_is_registered() -> None:
    assert "fast sync" in RECIPES["tiny-decoder"]
    assert recipe("tiny-decoder") is tiny_decoder.train


def test_architecture_matches_the_demo_vae() -> None:
    model = tiny_decoder.build_tiny_decoder()
    assert model.decode(torch.randn(1, 8, 16, 16)).sample.shape == (1, 3, 64, 64)
    same = tiny_decoder.build_tiny_decoder(seed=0).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-decoder")
    whole = tiny_decoder.train(root / "whole", steps=3, **RUN, **TINY)
    again = tiny_decoder.train(root / "again", steps=3, **RUN, **TINY)
    stopped = tiny_decoder.train(root / "split", steps=3, stop_at=2, **RUN, **TINY)
    resumed = tiny_decoder.train(root / "split", steps=3, **RUN, **TINY)
    return {"root": root, "whole": whole, "again": again, "stopped": stopped, "resumed": resumed}


def test_training_is_deterministic_and_learns(runs: dict[str, Path]) -> None:
    assert _same_weights(runs["whole"] / WEIGHTS, runs["again"] / WEIGHTS)
    init = tiny_decoder.build_tiny_decoder(tiny_decoder.TinyDecoderConfig.from_overrides(**TINY), seed=0)
    trained = load_file(runs["whole"] / WEIGHTS)
    decoder_keys = [k for k in trained if k.startswith("decoder.")]
    assert any(not torch.equal(trained[k], init.state_dict()[k]) for k in decoder_keys)
    # The placeholder encoder is not trained.
    assert all(torch.equal(trained[k], v) for k, v in init.state_dict().items() if k.startswith("encoder."))
    summary = json.loads((runs["whole"].parent / "train.json").read_text())
    assert summary["steps"] == 3 and summary["resumed_from"] == 0 and summary["final_loss"] > 0


def test_resume_is_bit_exact(runs: dict[str, Path]) -> None:
    root = runs["root"]
    assert runs["stopped"] == root / "split" / "checkpoint"
    assert json.loads((root / "split" / "train.json").read_text())["resumed_from"] == 2
    assert _same_weights(runs["whole"] / WEIGHTS, runs["resumed"] / WEIGHTS)
    name = "tiny_decoder.safetensors"
    assert _same_weights(root / "whole" / "checkpoint" / name, root / "split" / "checkpoint" / name)


def test_resume_with_other_settings_is_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(CheckpointMismatch):
        tiny_decoder.train(runs["root"] / "whole", steps=3, n_data=8, batch_size=2, **TINY)


def test_rejects_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown"):
        tiny_decoder.train(tmp_path, steps=1, no_such_option=1)


def test_evaluate_reports_both_psnrs(runs: dict[str, Path]) -> None:
    metrics = tiny_decoder.evaluate(runs["whole"], n=4, batch=2)
    assert metrics["n"] == 4
    assert metrics["psnr_full_vs_original"] > 20  # the demo VAE itself (about 29.8 dB on 1000 crops)
    for key in ("psnr_vs_full", "psnr_vs_full_min", "psnr_tiny_vs_original"):
        assert 0 < metrics[key] < 100


def test_cli_trains_the_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "td"
    assert main(["demo", "train", "tiny-decoder", "--steps", "2", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"recipe": "tiny-decoder", "model": str(out / "model")}
    tiny = AutoencoderTiny.from_pretrained(out / "model", local_files_only=True)
    assert tiny.decode(torch.randn(1, 8, 4, 4)).sample.shape == (1, 3, 16, 16)
    assert json.loads((out / "train.json").read_text())["n_data"] == 2 * 16  # no more crops than 2 steps see
