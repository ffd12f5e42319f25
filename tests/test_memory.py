"""Memory preflight: the estimate's invariants, refusal before any model call, out-of-memory errors reported."""

from __future__ import annotations

import pytest
import torch

from syncguide import memory
from syncguide.errors import OutOfMemory
from test_cli import FAST, run_cli

# SD 2-base's published UNet and VAE configs (the levels the estimate reads)
SD2_UNET = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2}
SD2_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2}
PAPER = {"latent": (64, 384), "window": 64, "images": 1, "rows": 1, "guided": True, "sync_rows": 1}


def _need(**changes) -> memory.Need:
    args = {**PAPER, "checkpointing": False, "element_size": 4, **changes}
    return memory.estimate(SD2_UNET, SD2_VAE, **args)


def test_each_setting_moves_the_phase_it_should() -> None:
    base = _need()
    assert _need(latent=(64, 768)).decode == pytest.approx(2 * base.decode)  # the decode is the whole canvas
    assert _need(sync_rows=4).sync == pytest.approx(4 * base.sync)
    assert _need(checkpointing=True).sync < base.sync / 5  # block inputs only
    assert _need(rows=8).denoise == pytest.approx(8 * base.denoise)
    assert _need(guided=False).denoise == pytest.approx(base.denoise / 2)
    assert _need(element_size=2).sync == pytest.approx(base.sync / 2)
    assert _need(sync_rows=0).sync == 0 and base.peak[0] == "the sync pass"
    # the sync pass through the decoder keeps GiBs per 512-px window in float32 (the reason for --sync-batch-size)
    assert 2**30 < base.sync < 32 * 2**30


def test_a_transformer_or_tiny_decoder_without_levels_counts_nothing() -> None:
    need = memory.estimate({}, {"decoder_block_out_channels": [64]}, **PAPER, checkpointing=False, element_size=4)
    assert (need.denoise, need.sync, need.decode) == (0, 0, 0)


def test_check_fits_refuses_the_phase_that_does_not_fit() -> None:
    need = _need()
    memory.check_fits(need, torch.device("cpu"), free=int(need.sync * 2))
    with pytest.raises(OutOfMemory, match=r"the sync pass needs at least about .* but cpu has 1\.0 GiB free") as info:
        memory.check_fits(need, torch.device("cpu"), free=2**30)
    assert "sync_batch_size 1" in str(info.value) and "sync_checkpointing" in str(info.value)
    with pytest.raises(OutOfMemory, match="the window stack"):
        memory.check_fits(need, torch.device("cpu"), state=2 * 2**30, free=2**30)
    assert isinstance(info.value, MemoryError)


def _count_unet_calls(pipe) -> list[int]:
    calls: list[int] = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_the_pipeline_refuses_before_any_model_call_unless_told(pipe, monkeypatch, random_lpips) -> None:
    calls = _count_unet_calls(pipe)
    monkeypatch.setattr(memory, "free_memory", lambda device: 1024)
    kwargs = {"height": 64, "width": 128, "stride": 4, "num_inference_steps": 1, "perceptual_loss": random_lpips}
    with pytest.raises(OutOfMemory, match=r"but cpu has 0\.1 GiB free"):
        pipe("a", **kwargs)
    assert calls == []
    monkeypatch.setattr(memory, "free_memory", lambda device: 2**40)
    pipe("a", **kwargs, output_type="latent")
    assert calls, "a run that fits goes ahead"
    monkeypatch.setattr(memory, "free_memory", lambda device: 1024)
    pipe("a", **kwargs, output_type="latent", memory_check=False)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory."),
        RuntimeError("DefaultCPUAllocator: can't allocate memory"),
        MemoryError(),
    ],
)
def test_an_out_of_memory_error_while_sampling_is_reported(pipe, monkeypatch, error) -> None:
    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(type(pipe.backbone), "predict", boom)
    with pytest.raises(OutOfMemory, match="cpu ran out of memory while sampling: to fit, try a smaller"):
        pipe("a", height=64, width=128, stride=4, num_inference_steps=1, sync_weight=0)


def test_other_runtime_errors_pass_through(pipe, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(type(pipe.backbone), "predict", boom)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        pipe("a", height=64, width=128, stride=4, num_inference_steps=1, sync_weight=0)


def test_the_cli_says_how_to_fit_in_one_line(tiny_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(memory, "free_memory", lambda device: 1024)
    out = tmp_path / "x.png"
    assert run_cli(["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("syncguide panorama: error: the "), err
    assert "--stride" in err or "--sync-batch-size 1" in err
    assert not out.exists()
    assert run_cli(["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(out), "--no-memory-check"]) == 0
    assert out.exists()


def test_a_huge_canvas_is_refused_in_seconds_not_allocated(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(memory, "free_memory", lambda device: 32 * 2**30)  # a 32 GiB machine, whatever this one is
    out = tmp_path / "x.png"
    # the demo model at the largest side allowed: 262,144 windows, whose state alone is about 96 GiB
    assert run_cli(["panorama", "a", "--width", "32768", "--height", "32768", "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "the window stack needs at least about" in err[-1] and "--stride" in err[-1] and not out.exists()


def test_a_controlnet_adds_its_residuals_and_its_sync_activations(pipe, monkeypatch) -> None:
    base, control = _need(), _need(control=True)
    assert control.decode == base.decode and control.denoise > base.denoise
    unet = {**PAPER, "checkpointing": False, "element_size": 4}
    alone = [memory.estimate(SD2_UNET, {}, **unet, control=c).sync for c in (False, True)]
    assert alone[1] == pytest.approx(1.5 * alone[0])  # the sync pass keeps the ControlNet's half-UNet too
    assert _need(sync_rows=0, control=True).sync == 0
    between = int((base.sync + control.sync) / 2)
    memory.check_fits(base, torch.device("cpu"), free=between)
    with pytest.raises(OutOfMemory, match="the sync pass"):
        memory.check_fits(control, torch.device("cpu"), free=between)
    # the pipeline tells the estimate when a ControlNet runs
    from syncguide import SyncDiffusionPipeline
    from syncguide.models.tiny import random_controlnet

    seen = []
    estimate = memory.estimate
    monkeypatch.setattr(memory, "estimate", lambda *args: seen.append(args[-1]) or estimate(*args))
    controlled = SyncDiffusionPipeline(**pipe.components, controlnet=random_controlnet(pipe.unet, 8))
    controlled.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 64, 128)
    args = dict(height=64, width=128, num_inference_steps=1, stride=4, sync_weight=0.0, output_type="latent")
    controlled("a", control_image=image, **args)
    pipe("a", **args)
    assert seen == [True, False]
