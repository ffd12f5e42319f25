"""The models shipped in the package load offline, run, and are the CLI's default."""

import json

import torch
from diffusers import DDPMPipeline, StableDiffusionPipeline
from transformers import CLIPModel, CLIPTokenizer

from syncguide.cli.main import main
from syncguide.demo.bundled import BUNDLED, MODELS, bundled
from syncguide.demo.train.common import make_crops
from syncguide.demo.train.judge import load_judge
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
