"""Fast SyncDiffusion: the model output held constant (no denoiser backward, one forward a step), a tiny decoder in
the gradient path, the loss at a reduced size; each switchable, all off = the exact method."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderTiny

from syncguide.errors import SettingError
from syncguide.guidance.perceptual import per_image
from syncguide.guidance.sync import synchronize
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.sampling.hooks import shrink
from syncguide.tiling import anchor_index, crop_all, make_windows

PROMPT = "a photo of the mountains at sunset"
ARGS = dict(height=64, width=192, stride=4, num_inference_steps=4, output_type="latent")


def tiny_decoder(channels: int = 4) -> AutoencoderTiny:
    """A random AutoencoderTiny (TAESD layout: three 2x upsamplings, for SD's 8x VAE)."""
    torch.manual_seed(0)
    blocks = (8, 8, 8, 8)
    return AutoencoderTiny(
        encoder_block_out_channels=blocks,
        decoder_block_out_channels=blocks,
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=channels,
    ).eval()


def _run(pipe, loss, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPT, generator=generator, perceptual_loss=loss, **{**ARGS, "sync_weight": 20.0, **kwargs}).images


def test_the_fast_code_path_with_every_approximation_off_is_the_exact_method(pipe, random_lpips) -> None:
    """The full VAE passed as the gradient-path decoder and a loss size above the image size take the fast mode's
    code path (its own decode and prediction calls, the resize step) and must change nothing."""
    exact = _run(pipe, random_lpips)
    same = _run(pipe, random_lpips, sync_decoder=pipe.vae, sync_loss_size=4096)
    assert torch.equal(same, exact)
    assert not torch.allclose(_run(pipe, random_lpips, sync_mode="fast"), exact, atol=1e-5)


class Counter:
    """Counts calls of a module's method while delegating to it."""

    def __init__(self, module: torch.nn.Module, name: str) -> None:
        self.module, self.name, self.calls, self.grad_calls = module, name, 0, 0
        self.original = getattr(module, name)

    def __enter__(self) -> Counter:
        def counted(*args, **kwargs):
            self.calls += 1
            self.grad_calls += torch.is_grad_enabled()
            return self.original(*args, **kwargs)

        setattr(self.module, self.name, counted)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.module, self.name, self.original)


def test_with_a_tiny_decoder_the_gradient_path_never_runs_the_full_vae_decoder(pipe, random_lpips) -> None:
    with Counter(pipe.vae, "decode") as vae, Counter(pipe.unet, "forward") as unet:
        _run(pipe, random_lpips, sync_mode="fast", sync_decoder=tiny_decoder(), output_type="pt")
    assert vae.calls == 1 and vae.grad_calls == 0  # the final image only
    windows = len(make_windows(8, 24, 8, 4))
    assert unet.calls == 4 * windows and unet.grad_calls == 0  # one no-grad forward per window and step
    with Counter(pipe.vae, "decode") as vae, Counter(pipe.unet, "forward") as unet:
        _run(pipe, random_lpips, output_type="pt")
    assert vae.grad_calls > 0 and unet.grad_calls > 0  # the exact method differentiates through both


def test_one_fast_sync_step_lowers_every_non_anchor_windows_loss(pipe, random_lpips) -> None:
    backbone, scheduler = pipe.backbone, pipe.scheduler
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[2]
    windows = make_windows(8, 24, 8, 4)
    latents = torch.randn(1, 4, 8, 24, generator=torch.Generator().manual_seed(0))
    cond = backbone.encode_prompt([PROMPT], [""]).repeat(len(windows))
    denoiser = WindowDenoiser(backbone, scheduler, cond, 7.5, len(windows), torch.zeros(len(windows), 2).long())
    views = crop_all(latents, windows)
    with torch.no_grad():
        held = denoiser.output(views, t)
    decoder = tiny_decoder()

    def to_image(x, rows):  # fast mode's x0 image: the output held, the tiny decoder
        x0 = denoiser.x0(x, held[rows], t)
        return (decoder.decode(x0 / decoder.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)

    anchor = anchor_index(windows)

    def distance(v):
        with torch.no_grad():
            images = to_image(v, torch.arange(len(windows))) * 2 - 1
        return per_image(random_lpips, images, images[anchor : anchor + 1].expand_as(images))

    synced = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=2)
    before, after = distance(views), distance(synced)
    others = [j for j in range(len(windows)) if j != anchor]
    assert (after[others] < before[others]).all(), (before, after)


def test_a_decoder_for_other_latents_is_a_clear_error(pipe, random_lpips) -> None:
    with pytest.raises(SettingError, match=r"sync_decoder.*16-channel.*4"):
        _run(pipe, random_lpips, sync_mode="fast", sync_decoder=tiny_decoder(16))
    with pytest.raises(SettingError, match="sync_decoder"):
        _run(pipe, random_lpips, sync_decoder=torch.nn.Identity())


def test_the_loss_size_shrinks_the_longer_side_and_never_enlarges() -> None:
    images = torch.rand(2, 3, 64, 128)
    assert shrink(images, 32).shape == (2, 3, 16, 32)
    assert shrink(images, 512) is images
    with pytest.raises(SettingError, match="sync_loss_size"):
        from syncguide.settings import PanoramaSettings

        PanoramaSettings(sync_loss_size=4)


def test_cli_fast_mode_with_a_sync_decoder_and_its_errors(tiny_dir, tmp_path, capsys) -> None:
    from syncguide.cli.main import main
    from syncguide.pngmeta import read_parameters

    good, wrong = tmp_path / "taesd", tmp_path / "taesd16"
    tiny_decoder().save_pretrained(good)
    tiny_decoder(16).save_pretrained(wrong)
    base = ["panorama", "a photo", "--model", str(tiny_dir), "--height", "64", "--width", "128", "--steps", "2"]
    base += ["--perceptual", "lpips-random", "--sync-mode", "fast"]
    out = tmp_path / "p.png"
    assert main([*base, "--sync-decoder", str(good), "--out", str(out)]) == 0
    stored = read_parameters(out)
    assert stored["sync_mode"] == "fast" and stored["sync_decoder"] == str(good)
    capsys.readouterr()
    for decoder, named in ((wrong, "16-channel"), (tmp_path / "missing", "does not exist"), (tiny_dir, "config")):
        code = main([*base, "--sync-decoder", str(decoder), "--out", str(tmp_path / "q.png")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--sync-decoder" in err and named in err, err
        assert not (tmp_path / "q.png").exists()


def test_live_previews_come_every_k_steps_through_the_tiny_decoder(pipe, random_lpips) -> None:
    seen = []
    decoder = tiny_decoder()
    with Counter(pipe.vae, "decode") as vae, Counter(decoder, "decode") as tiny:
        _run(
            pipe,
            random_lpips,
            sync_weight=0.0,
            sync_decoder=decoder,
            output_type="pt",
            num_inference_steps=5,
            preview=lambda i, images: seen.append((i, images[0].size)),
            preview_every=2,
        )
    assert seen == [(1, (192, 64)), (3, (192, 64)), (4, (192, 64))]  # steps 2, 4 and the last
    assert tiny.calls == 3 and vae.calls == 1  # previews by the tiny decoder, the final image by the VAE
    with pytest.raises(SettingError, match="preview_every"):
        _run(pipe, random_lpips, preview=print, preview_every=0)


def test_cli_preview_writes_each_previewed_step(tiny_dir, tmp_path) -> None:
    from syncguide.cli.main import main

    argv = ["panorama", "a photo", "--model", str(tiny_dir), "--height", "64", "--width", "128", "--steps", "4"]
    previews = tmp_path / "previews"
    argv += ["--method", "multidiffusion", "--preview", str(previews), "--preview-every", "2"]
    assert main([*argv, "--out", str(tmp_path / "p.png")]) == 0
    assert sorted(p.name for p in previews.iterdir()) == ["step_002.png", "step_004.png"]
