"""``syncguide layout`` takes the SDG options of ``panorama``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.cli.io import read_parameters
from syncguide.cli.main import main


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.fixture
def reference_png(tmp_path: Path) -> Path:
    path = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_layout_with_style_guidance(tiny_dir, tiny_clip_dir, reference_png, tmp_path, capsys) -> None:
    fast = ["--steps", "3", "--height", "64", "--width", "128", "--stride", "4", "--method", "multidiffusion"]
    common = ["layout", "--background", "a photo of hills", "--box", "snow", "0.5,0,1,1", "--model", str(tiny_dir)]
    styled, plain = tmp_path / "styled.png", tmp_path / "plain.png"
    guided = ["--clip", str(tiny_clip_dir), "--style", str(reference_png), "--style-weight", "1e5"]
    assert run_cli([*common, *fast, *guided, "--out", str(styled)]) == 0
    assert run_cli([*common, *fast, "--out", str(plain)]) == 0
    stored = read_parameters(styled)
    assert stored["style"] == str(reference_png) and stored["background"] == "a photo of hills"
    assert "style" not in read_parameters(plain)
    assert np.abs(np.asarray(Image.open(styled), float) - np.asarray(Image.open(plain), float)).max() > 0
    capsys.readouterr()
    assert run_cli([*common, *fast, "--style", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--style" in err and not (tmp_path / "x.png").exists()
