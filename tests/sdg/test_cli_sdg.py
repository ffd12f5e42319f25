"""``syncguide generate`` / ``finetune-clip`` / ``panorama --style``: happy paths, parameters, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.cli.io import read_parameters
from syncguide.cli.main import main
from syncguide.models.tiny import save_tiny_clip


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.fixture(scope="module")
def reference_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def _generate(ddpm: Path, clip: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--model", str(ddpm), "--clip", str(clip), "--n", "3", "--batch-size", "2",
            "--steps", "4", "--out", str(out), *extra]  # fmt: skip


def test_generate_writes_samples_with_parameters(tiny_ddpm_dir, tiny_clip_dir, reference_png, tmp_path, capsys):
    out = tmp_path / "samples"
    argv = _generate(tiny_ddpm_dir, tiny_clip_dir, out, "--text", "a photo of snow", "--style", str(reference_png))
    assert run_cli(argv) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["sample-0-000.png", "sample-0-001.png", "sample-0-002.png"]
    stored = read_parameters(files[1])
    assert stored["text"] == "a photo of snow" and stored["style"] == str(reference_png) and stored["index"] == 1
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["text_weight"] == stored["text_weight"] and printed["n"] == 3
    plain = tmp_path / "plain"
    assert run_cli(_generate(tiny_ddpm_dir, tiny_clip_dir, plain)) == 0
    assert (plain / "sample-0-000.png").read_bytes() != files[0].read_bytes()  # guidance changed the sample
    again = tmp_path / "again"
    assert run_cli(_generate(tiny_ddpm_dir, tiny_clip_dir, again, "--text", "a photo of snow", "--style",
                             str(reference_png))) == 0  # fmt: skip
    assert (again / "sample-0-002.png").read_bytes() == files[2].read_bytes()  # deterministic


def test_generate_bad_input_one_line_exit_2(tiny_ddpm_dir, tiny_clip_dir, reference_png, tmp_path, capsys):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    wide_clip = save_tiny_clip(tmp_path / "wide-clip", image_size=128)
    out = tmp_path / "out"
    cases = [
        (["--text", "snow", "--text-weight", "-1"], "--text-weight"),
        (["--style", str(reference_png), "--image-weight", "-5"], "--image-weight"),
        (["--content", str(tmp_path / "missing.png")], "--content"),
        (["--style", str(not_image)], "--style"),
        (["--text", "snow", "--guidance-steps", "0.8,0.2"], "--guidance-steps"),
        (["--n", "0"], "--n"),
        (["--text", " "], "--text"),
    ]
    for extra, option in cases:
        assert run_cli(_generate(tiny_ddpm_dir, tiny_clip_dir, out, *extra)) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and option in err, (extra, err)
    no_clip = ["generate", "--model", str(tiny_ddpm_dir), "--text", "snow", "--out", str(out), "--steps", "2"]
    assert run_cli(no_clip) == 2
    assert ("--clip" in capsys.readouterr().err and not out.exists()) or not any(out.iterdir())
    assert run_cli(_generate(tiny_ddpm_dir, wide_clip, out, "--text", "snow")) == 2
    assert "does not fit" in capsys.readouterr().err


def test_generate_never_overwrites_without_asking(tiny_ddpm_dir, tiny_clip_dir, tmp_path, capsys) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "sample-0-001.png").write_bytes(b"precious")
    assert run_cli(_generate(tiny_ddpm_dir, tiny_clip_dir, out)) == 2
    assert (out / "sample-0-001.png").read_bytes() == b"precious" and len(list(out.iterdir())) == 1
    assert run_cli([*_generate(tiny_ddpm_dir, tiny_clip_dir, out), "--overwrite"]) == 0
    assert len(list(out.iterdir())) == 3


def test_finetune_clip_cli_trains_resumes_and_refuses_bad_input(tiny_ddpm_dir, tiny_clip_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(data / f"{i}.png")
    base = ["finetune-clip", "--clip", str(tiny_clip_dir), "--data", str(data), "--diffusion", str(tiny_ddpm_dir),
            "--batch-size", "4", "--out", str(tmp_path / "ft")]  # fmt: skip
    assert run_cli([*base, "--steps", "2"]) == 0
    assert run_cli([*base, "--steps", "4"]) == 0
    info = json.loads((tmp_path / "ft" / "noise_aware.json").read_text())
    assert info["steps"] == 4 and info["resumed_from"] == 2
    capsys.readouterr()
    assert run_cli([*base, "--steps", "6", "--lr", "0.5"]) == 2
    assert "has settings" in capsys.readouterr().err
    assert run_cli([*base, "--steps", "0"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli([*base[:4], str(empty), *base[5:], "--steps", "2", "--restart"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "no image files" in last and "--data:" in last  # the library's setting, named by its option


def test_panorama_with_style_guidance(tiny_dir, tiny_clip_dir, reference_png, tmp_path) -> None:
    fast = ["--steps", "3", "--height", "64", "--width", "128", "--stride", "4", "--perceptual", "lpips-random"]
    common = ["panorama", "a photo of hills", "--model", str(tiny_dir), *fast, "--method", "multidiffusion"]
    styled, plain = tmp_path / "styled.png", tmp_path / "plain.png"
    assert run_cli([*common, "--clip", str(tiny_clip_dir), "--style", str(reference_png), "--out", str(styled)]) == 0
    assert run_cli([*common, "--out", str(plain)]) == 0
    assert read_parameters(styled)["style"] == str(reference_png) and "style" not in read_parameters(plain)
    assert np.abs(np.asarray(Image.open(styled), float) - np.asarray(Image.open(plain), float)).max() > 0
