"""The models shipped in the package load offline, run, and are the CLI's default."""

import json

import torch
from diffusers import DDPMPipeline, StableDiffusionPipeline
from transformers import CLIPModel, CLIPTokenizer

from syncguide.cli.main import main
from syncguide.demo.bundled import BUNDLED, MODELS, bundled
from syncguide.demo.judge import load_judge
from syncguide.demo.train.common import make_crops
from syncguide.demo.world import VOCABULARY


def test_every_bundled_model_is_small_safe_and_has_a_card() -> None:
    files = [f for f in BUNDLED.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 40 * 2**20
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    for name in MODELS:
        assert "Measured quality" in (bundled(name) / "README.md").read_text()


def test_judge_reads_fresh_world_crops() -> None:
    crops = make_crops(seed=999, n=64)
    pred = load_judge(bundled("judge")).predict(crops.images)
    for attribute in ("time", "season"):
        assert (pred[attribute] == crops.labels[attribute]).float().mean() >= 0.9


def test_clip_loads_offline_with_its_full_tokenizer() -> None:
    clip = CLIPModel.from_pretrained(bundled("clip"))
    tokenizer = CLIPTokenizer.from_pretrained(bundled("clip"))
    assert len(tokenizer) == clip.config.text_config.vocab_size and len(tokenizer) > len(VOCABULARY)
    crops = make_crops(seed=5, n=8)
    texts = tokenizer(crops.captions, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = clip(pixel_values=crops.images, **texts)
    assert out.logits_per_image.shape == (8, 8)


def test_sd_and_ddpm_load_offline_and_sample() -> None:
    sd = StableDiffusionPipeline.from_pretrained(bundled("sd"))
    sd.set_progress_bar_config(disable=True)
    image = sd("a photo of mountains at sunset", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3)
    ddpm = DDPMPipeline.from_pretrained(bundled("ddpm"))
    ddpm.set_progress_bar_config(disable=True)
    assert ddpm(batch_size=2, num_inference_steps=2, output_type="np").images.shape[0] == 2


def test_cli_default_model_is_the_bundled_demo(tmp_path, capsys) -> None:
    out = tmp_path / "pano.png"
    assert main(["panorama", "a photo of mountains at sunset", "--steps", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    params = json.loads(captured.out.strip().splitlines()[-1])
    assert "bundled demo model" in captured.err and "--model" in captured.err
    assert params["model"] == str(bundled("sd")) and params["perceptual"] == "demo-clip"
    assert (params["height"], params["width"]) == (64, 512)
    assert out.stat().st_size > 0


def test_noise_aware_clip_reads_noisy_crops_better_than_the_plain_one() -> None:
    from syncguide.demo.train.clip import TIME_PROMPTS
    from syncguide.models.guidance_clip import load_clip
    from syncguide.models.noise_aware import NoiseAwareCLIP

    noise_aware, plain = load_clip("demo-noise-aware"), load_clip("demo")
    assert isinstance(noise_aware, NoiseAwareCLIP)
    abar = DDPMPipeline.from_pretrained(bundled("ddpm")).scheduler.alphas_cumprod[600]
    crops = make_crops(seed=31, n=64, size=32)
    noisy = abar.sqrt() * crops.images + (1 - abar).sqrt() * torch.randn(
        crops.images.shape, generator=torch.Generator().manual_seed(0)
    )
    accuracy = {}
    with torch.no_grad():
        for name, encoder in (("noise_aware", noise_aware), ("plain", plain)):
            text = torch.nn.functional.normalize(encoder.embed_text(list(TIME_PROMPTS.values())), dim=-1)
            image = torch.nn.functional.normalize(encoder.embed(noisy, torch.full((64,), 600)), dim=-1)
            accuracy[name] = (image @ text.T).argmax(1).eq(crops.labels["time"]).float().mean().item()
    assert accuracy["noise_aware"] >= 0.8 and accuracy["noise_aware"] > accuracy["plain"] + 0.2


def test_generate_without_model_uses_the_demo_ddpm_and_noise_aware_clip(tmp_path, capsys) -> None:
    from syncguide.cli.io import read_parameters

    argv = ["generate", "--text", "a photo of a landscape at night", "--n", "2", "--steps", "5", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "bundled demo DDPM" in capsys.readouterr().err
    stored = read_parameters(tmp_path / "sample-0-001.png")
    assert stored["clip"] == "demo-noise-aware" and stored["text_weight"] == 300.0 and stored["style_weight"] == 3e4
