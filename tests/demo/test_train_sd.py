import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPModel

from syncguide import SyncDiffusionPipeline
from syncguide.demo.train import sd
from syncguide.models.tiny import save_tiny_clip

TINY = {"block_out_channels": (16, 16, 16), "norm_num_groups": 8, "attention_head_dim": 4}


def save_vae(path, latent_channels: int):
    """A tiny random 3-level VAE (64 px in, 16 px latents) saved in ``path``."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=latent_channels,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=64,
    )
    vae.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    return save_vae(tmp_path_factory.mktemp("vae"), latent_channels=4)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def train(clip_dir):
    def run(out, vae_dir, steps, **kwargs):
        return sd.train(out, vae_dir, clip_dir, steps=steps, n_data=16, batch_size=4, **TINY, **kwargs)

    return run


def test_resumed_training_equals_uninterrupted(tmp_path, vae_dir, train) -> None:
    whole = train(tmp_path / "whole", vae_dir, 4)
    train(tmp_path / "split", vae_dir, 2)
    split = train(tmp_path / "split", vae_dir, 4)
    a, b = (UNet2DConditionModel.from_pretrained(p / "unet").state_dict() for p in (whole, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    restarted = train(tmp_path / "split", vae_dir, 4, resume=False)  # from scratch again: same weights too
    c = UNet2DConditionModel.from_pretrained(restarted / "unet").state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_training_lowers_the_denoising_loss(tmp_path, vae_dir, train) -> None:
    before = train(tmp_path / "a", vae_dir, 1)
    after = train(tmp_path / "b", vae_dir, 30)

    def loss(model_dir) -> float:
        pipe = StableDiffusionPipeline.from_pretrained(model_dir)
        data = sd.encode_data(pipe.vae, pipe.text_encoder, pipe.tokenizer, seed=0, n=16)
        g = torch.Generator().manual_seed(1)
        noise = torch.randn(data["mean"].shape, generator=g)
        t = torch.randint(0, 1000, (16,), generator=g)
        noisy = DDPMScheduler(**sd.SCHEDULE).add_noise(data["mean"], noise, t)
        with torch.no_grad():
            pred = pipe.unet(noisy, t, encoder_hidden_states=data["cond"]).sample
        return torch.nn.functional.mse_loss(pred, noise).item()

    assert loss(after) < loss(before)


def test_export_loads_as_stable_diffusion_and_panorama_pipeline(tmp_path, vae_dir, clip_dir, train) -> None:
    model = train(tmp_path / "m", vae_dir, 1)
    sd_pipe = StableDiffusionPipeline.from_pretrained(model)
    clip = CLIPModel.from_pretrained(clip_dir)  # the frozen text tower and tokenizer are the CLIP's
    assert sd_pipe.tokenizer.model_max_length == 16 and len(sd_pipe.tokenizer) == clip.config.text_config.vocab_size
    text = sd_pipe.text_encoder.state_dict()
    assert all(torch.equal(v, text[k]) for k, v in clip.text_model.state_dict().items())
    pipe = SyncDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    assert (pipe.backbone.window, pipe.backbone.vae_scale) == (16, 4)
    image = pipe(
        "a photo of mountains", height=64, width=128, stride=8, num_inference_steps=2, sync_weight=0, output_type="np"
    ).images
    assert image.shape == (1, 64, 128, 3)


def test_offset_noise_changes_training_and_is_a_resume_setting(tmp_path, vae_dir, train) -> None:
    plain = train(tmp_path / "plain", vae_dir, 2, offset_noise=0.0)
    offset = train(tmp_path / "offset", vae_dir, 2, offset_noise=0.1)
    a, b = (UNet2DConditionModel.from_pretrained(p / "unet").state_dict() for p in (plain, offset))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="settings"):
        train(tmp_path / "offset", vae_dir, 3, offset_noise=0.0)  # resuming without the offset is refused


def test_unet_takes_the_vae_latent_channels(tmp_path, clip_dir) -> None:
    save_vae(tmp_path / "vae8", latent_channels=8)
    model = sd.train(tmp_path / "sd", tmp_path / "vae8", clip_dir, steps=1, n_data=8, batch_size=4, **TINY)
    pipe = SyncDiffusionPipeline.from_pretrained(model)
    assert pipe.unet.config.in_channels == pipe.unet.config.out_channels == 8
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a photo", height=64, width=128, stride=8, num_inference_steps=2, output_type="pt", sync_weight=0
    ).images
    assert image.shape == (1, 3, 64, 128) and torch.isfinite(image).all()
