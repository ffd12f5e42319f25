"""Hub ids that cannot be had (offline, no network, not cached) fail at once in one line; cached ones are checked."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from syncguide import hub
from syncguide.errors import SettingError
from syncguide.modelkind import STABLE_DIFFUSION, UNCONDITIONAL
from test_cli import run_cli

DDPM_INDEX = {
    "_class_name": "DDPMPipeline",
    "scheduler": ["diffusers", "DDPMScheduler"],
    "unet": ["diffusers", "UNet2DModel"],
}
SD_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    **{k: ["diffusers", v] for k, v in (("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL"))},
    **{k: ["transformers", v] for k, v in (("text_encoder", "CLIPTextModel"), ("tokenizer", "CLIPTokenizer"))},
    "scheduler": ["diffusers", "DDIMScheduler"],
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of our own, and no proxy."""
    from huggingface_hub import constants

    directory = tmp_path / "hf-cache"
    directory.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(directory))
    for name in hub.PROXIES:
        monkeypatch.delenv(name, raising=False)
    return directory


def cache_model(cache: Path, repo: str, index: dict) -> None:
    """Put ``model_index.json`` of hub repo ``repo`` in the cache, as huggingface_hub lays it out."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snapshot = folder / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps(index))


def _argv(command: str, out: Path) -> list[str]:
    if command == "panorama":
        return ["panorama", "a photo", "--model", "not-a/real-model", "--steps", "1", "--out", str(out / "p.png")]
    return ["generate", "--model", "not-a/real-model", "--n", "1", "--steps", "1", "--out", str(out / "samples")]


@pytest.mark.parametrize("command", ["panorama", "generate"])
def test_an_uncached_hub_id_offline_fails_at_once_in_one_line(cache, monkeypatch, tmp_path, capsys, command) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    out.mkdir()
    run_cli(_argv(command, out))  # the first call imports the libraries: time the second
    capsys.readouterr()
    start = time.perf_counter()
    assert run_cli(_argv(command, out)) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"syncguide {command}: error: --model: not-a/real-model is not a local directory")
    assert "not in the Hugging Face cache" in err and "offline (HF_HUB_OFFLINE=1)" in err
    assert list(out.iterdir()) == []


def test_an_uncached_hub_id_without_network_fails_at_once(cache, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert run_cli(_argv("generate", tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the hub cannot be reached" in err and "Network is unreachable" in err, err
    assert not (tmp_path / "samples").exists()


def test_the_reachability_probe_gives_up_after_its_timeout(monkeypatch, cache) -> None:
    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    reachable, reason = hub.hub_reachable(timeout=0.2)
    assert time.perf_counter() - start < 2 and not reachable and "no answer within 0.2 s" in reason
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # the probe cannot see through a proxy
    assert hub.hub_reachable(timeout=0.2) == (True, "behind a proxy")


def test_a_cached_hub_id_is_checked_for_its_kind_offline(cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_model(cache, "org/ddpm", DDPM_INDEX)
    cache_model(cache, "org/sd", SD_INDEX)
    hub.check_model("org/ddpm", "model", (UNCONDITIONAL,))  # cached: no error offline
    hub.check_model("org/sd")  # the default kind: a Stable Diffusion pipeline
    with pytest.raises(SettingError, match=r"org/sd is a diffusers StableDiffusionPipeline .*; expected an uncond"):
        hub.check_model("org/sd", "model", (UNCONDITIONAL,))
    with pytest.raises(SettingError, match=r"org/ddpm is a diffusers DDPMPipeline") as error:
        hub.check_model("org/ddpm", "diffusion", (STABLE_DIFFUSION,))
    assert error.value.setting == "diffusion"
    with pytest.raises(SettingError, match="not in the Hugging Face cache"):
        hub.check_model("org/other")
