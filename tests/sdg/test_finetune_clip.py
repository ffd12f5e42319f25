"""Noise-aware CLIP: zero-init start, timestep conditioning, fine-tuning lowers its loss and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from syncguide.finetune_clip import FinetuneSettings, finetune, symmetric_infonce
from syncguide.models.guidance_clip import load_clip
from syncguide.models.noise_aware import NoiseAwareCLIP


def test_zero_initialised_encoder_is_the_original_at_every_timestep(tower) -> None:
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        original = tower.embed(x)
        maps = tower.feature_maps(x)
        encoder = NoiseAwareCLIP(tower)
        for t in (torch.tensor([0, 500, 999]), torch.tensor(250)):
            # atol: with the timestep MLP attached, attention may take its non-fused kernel (same maths)
            torch.testing.assert_close(encoder.embed(x, t), original, rtol=1e-5, atol=1e-6)
        for got, want in zip(encoder.feature_maps(x, torch.tensor([7, 7, 7])), maps, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_timestep_conditioning_is_per_sample(noise_aware: NoiseAwareCLIP) -> None:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).repeat(2, 1, 1, 1) * 2 - 1
    with torch.no_grad():
        both = noise_aware.embed(x, torch.tensor([10, 900]))
        early = noise_aware.embed(x[:1], torch.tensor([10]))
        late = noise_aware.embed(x[:1], torch.tensor([900]))
    assert not torch.allclose(early, late)
    torch.testing.assert_close(both, torch.cat([early, late]), rtol=1e-4, atol=1e-5)  # batch-size rounding only


def test_symmetric_infonce_is_low_for_matching_pairs() -> None:
    a = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    assert symmetric_infonce(a, a) < 1e-3
    assert symmetric_infonce(a, a.roll(1, dims=0)) > 10


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):  # smooth random colour fields of several sizes: distinct, easy to tell apart
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((24 + 4 * i, 20 + 2 * i), Image.BILINEAR).save(directory / f"{i}.png")
    return directory


def _settings(clip_dir: Path, ddpm_dir: Path, data: Path) -> FinetuneSettings:
    return FinetuneSettings(clip=str(clip_dir), data=str(data), diffusion=str(ddpm_dir), batch_size=8, lr=1e-4)


def test_finetuning_lowers_the_loss_and_exports_a_loadable_encoder(
    tmp_path: Path, tiny_clip_dir: Path, tiny_ddpm_dir: Path, image_dir: Path
) -> None:
    settings = _settings(tiny_clip_dir, tiny_ddpm_dir, image_dir)
    out = finetune(tmp_path / "ft", settings, steps=30, checkpoint_every=10)
    info = json.loads((out / "noise_aware.json").read_text())
    first = json.loads((out / "checkpoint" / "state.json").read_text())
    assert first["step"] == 30 and info["base"] == str(tiny_clip_dir)
    encoder = load_clip(str(out))
    assert isinstance(encoder, NoiseAwareCLIP)
    # The fine-tuned embedding of noisy images matches the clean teacher better than the original encoder's does.
    from syncguide.finetune_clip import diffusion_schedule, training_images

    abar, size = diffusion_schedule(str(tiny_ddpm_dir))
    x0 = training_images(str(image_dir), size)[:8]
    t = torch.full((8,), 600)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    xt = abar[t].sqrt().view(-1, 1, 1, 1) * x0 + (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * noise
    original = load_clip(str(tiny_clip_dir))
    with torch.no_grad():
        teacher = original.embed(x0)
        before = symmetric_infonce(original.embed(xt), teacher)
        after = symmetric_infonce(encoder.embed(xt, t), teacher)
    assert after < before


def test_finetuning_resumes_bit_for_bit(tmp_path: Path, tiny_clip_dir: Path, tiny_ddpm_dir: Path, image_dir: Path):
    settings = _settings(tiny_clip_dir, tiny_ddpm_dir, image_dir)
    whole = finetune(tmp_path / "whole", settings, steps=6, checkpoint_every=3)
    finetune(tmp_path / "split", settings, steps=3, checkpoint_every=3)
    split = finetune(tmp_path / "split", settings, steps=6, checkpoint_every=3)
    a, b = load_file(str(whole / "noise_aware.safetensors")), load_file(str(split / "noise_aware.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((split / "noise_aware.json").read_text())["resumed_from"] == 3
    other = FinetuneSettings(**{**settings.__dict__, "lr": 5e-4})
    with pytest.raises(ValueError, match=r"checkpoint .* has settings"):
        finetune(tmp_path / "split", other, steps=9)


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_finetuning_open_clip_towers_lowers_the_loss(kind: str) -> None:
    import copy

    from syncguide.finetune_clip import finetune_step
    from syncguide.models.tiny import tiny_open_clip

    original = tiny_open_clip(kind)
    student = NoiseAwareCLIP(copy.deepcopy(original))
    for param in student.trainable_parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.trainable_parameters(), lr=1e-4, weight_decay=0.0)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    settings = FinetuneSettings(clip="tiny", data="tiny", diffusion="tiny", batch_size=8)
    abar = torch.linspace(0.999, 0.05, 1000)
    step = finetune_step(student, original, optimizer, images, abar, settings, "cpu")
    t = torch.arange(8) * 120
    noisy = abar[t].sqrt().view(-1, 1, 1, 1) * images + (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * torch.randn(
        images.shape, generator=torch.Generator().manual_seed(1)
    )

    def loss() -> float:
        with torch.no_grad():
            return symmetric_infonce(student.eval().embed(noisy, t), original.embed(images)).item()

    before = loss()
    student.train()
    for k in range(30):
        step(k)
    assert loss() < before


def test_load_clip_specs(tmp_path: Path, tiny_clip_dir: Path) -> None:
    import open_clip

    from syncguide.models.clip_towers import OpenCLIP, TransformersCLIP

    config = {
        "embed_dim": 24,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "image_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "syncguide-tiny-rn.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "syncguide-tiny-rn.json")
    tower = load_clip("open_clip:syncguide-tiny-rn")
    assert isinstance(tower, OpenCLIP) and tower.resolution == 32 and hasattr(tower.visual, "layer4")
    assert tower.embed(torch.zeros(1, 3, 20, 20)).shape == (1, 24)
    demo = load_clip("demo")
    assert isinstance(demo, TransformersCLIP) and demo.resolution == 64
    assert isinstance(load_clip(str(tiny_clip_dir)), TransformersCLIP)
