"""The command line maps the library's SettingError to its option: one line, exit status 2, nothing written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from syncguide.cli import demo as demo_cli
from syncguide.cli.main import main
from syncguide.cli.options import option_name, usage_message
from syncguide.errors import SettingError
from syncguide.settings import PanoramaSettings
from syncguide.settings import option_name as settings_option_name


@pytest.mark.parametrize(
    ("setting", "option"),
    [
        ("num_inference_steps", "--steps"),
        ("guidance_scale", "--cfg"),
        ("sync_weight", "--sync-weight"),
        ("kid_subset_size", "--kid-subset-size"),
        ("panorama_dir", "PANORAMA_DIR"),
        ("seed", "--seed"),
    ],
)
def test_setting_names_map_to_option_names(setting: str, option: str) -> None:
    assert option_name(setting) == option
    assert usage_message(SettingError(setting, "must be >= 0; got -1")) == f"{option}: must be >= 0; got -1"


def test_every_sampling_setting_maps_as_the_settings_module_says() -> None:
    names = [item.name for item in dataclasses.fields(PanoramaSettings)]
    assert "bootstrap_fraction" in names and option_name("bootstrap_fraction") == "--bootstrap"
    assert [option_name(name) for name in names] == [settings_option_name(name) for name in names]


def test_a_library_setting_error_is_one_line_naming_the_option(tmp_path: Path, capsys) -> None:
    panoramas = tmp_path / "panoramas"
    panoramas.mkdir()
    out = tmp_path / "eval"
    assert main(["eval", str(panoramas), "--kid-subset-size", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "syncguide eval: error: --kid-subset-size: must be >= 2; got 1\n"
    assert main(["eval", str(panoramas), "--out", str(out)]) == 2  # a positional argument: its metavar
    assert capsys.readouterr().err == f"syncguide eval: error: PANORAMA_DIR: no .png files in {panoramas}\n"
    assert not out.exists()


def test_an_exception_name_of_the_mapping_reaches_the_message(tmp_path: Path, monkeypatch, capsys) -> None:
    def run_world(args) -> int:
        raise SettingError("num_inference_steps", "must be >= 1; got 0")

    monkeypatch.setattr(demo_cli, "run_world", run_world)
    assert main(["demo", "world", "--out", str(tmp_path / "w.png")]) == 2
    assert capsys.readouterr().err == "syncguide demo world: error: --steps: must be >= 1; got 0\n"
    assert list(tmp_path.iterdir()) == []


def test_reproduce_checks_its_settings_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["reproduce", "--weights", "5", "5", "--out", str(out)]) == 2
    error = "syncguide reproduce: error: --weights: must be distinct and >= 0; got [5.0, 5.0]\n"
    assert capsys.readouterr().err == error
    assert main(["reproduce", "--device", "gpu0", "--out", str(out)]) == 2
    assert "syncguide reproduce: error: --device: must be cpu, cuda" in capsys.readouterr().err
    assert not out.exists()
