import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from syncguide import SyncDiffusionPipeline
from syncguide.demo.train import sd
from syncguide.demo.world import VOCABULARY

TINY = {"block_out_channels": (16, 16, 16), "norm_num_groups": 8, "attention_head_dim": 4}
TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=64,
    )
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


def train(out, vae_dir, steps, **kwargs):
    return sd.train(out, vae_dir, steps=steps, n_data=16, batch_size=4, text_overrides=TEXT, **TINY, **kwargs)


def test_resumed_training_equals_uninterrupted(tmp_path, vae_dir) -> None:
    whole = train(tmp_path / "whole", vae_dir, 4)
    train(tmp_path / "split", vae_dir, 2)
    split = train(tmp_path / "split", vae_dir, 4)
    a, b = (UNet2DConditionModel.from_pretrained(p / "unet").state_dict() for p in (whole, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    restarted = train(tmp_path / "split", vae_dir, 4, resume=False)  # from scratch again: same weights too
    c = UNet2DConditionModel.from_pretrained(restarted / "unet").state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_training_lowers_the_denoising_loss(tmp_path, vae_dir) -> None:
    before = train(tmp_path / "a", vae_dir, 1)
    after = train(tmp_path / "b", vae_dir, 30)

    def loss(model_dir) -> float:
        pipe = StableDiffusionPipeline.from_pretrained(model_dir)
        data = sd.encode_data(pipe.vae, pipe.tokenizer, seed=0, n=16)
        g = torch.Generator().manual_seed(1)
        noise = torch.randn(data["mean"].shape, generator=g)
        t = torch.randint(0, 1000, (16,), generator=g)
        noisy = DDPMScheduler(**sd.SCHEDULE).add_noise(data["mean"], noise, t)
        with torch.no_grad():
            pred = pipe.unet(noisy, t, encoder_hidden_states=pipe.text_encoder(data["ids"])[0]).sample
        return torch.nn.functional.mse_loss(pred, noise).item()

    assert loss(after) < loss(before)


def test_export_loads_as_stable_diffusion_and_panorama_pipeline(tmp_path, vae_dir) -> None:
    model = train(tmp_path / "m", vae_dir, 1)
    sd_pipe = StableDiffusionPipeline.from_pretrained(model)
    assert len(sd_pipe.tokenizer) > len(VOCABULARY) and sd_pipe.tokenizer.model_max_length == sd.MAX_TOKENS
    assert sd_pipe.tokenizer("snowy mountains").input_ids[1:3] == [
        sd_pipe.tokenizer.convert_tokens_to_ids(w + "</w>") for w in ("snowy", "mountains")
    ]
    pipe = SyncDiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    assert (pipe.model.window, pipe.model.vae_scale) == (16, 4)
    image = pipe(
        "a photo of mountains", height=64, width=128, stride=8, num_inference_steps=2, sync_weight=0, output_type="np"
    ).images
    assert image.shape == (1, 64, 128, 3)
