"""``--controlnet ID_OR_DIR --control-image FILE [--control-scale S]`` on the command line: the happy path (the
ControlNet changes the image, scale 0 is the plain run, ``--from`` remakes it), and bad input as one line, exit 2,
no file: a missing control image, a wrong aspect ratio, a ControlNet of another family or SD version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.cli.main import main
from syncguide.models.tiny import save_tiny_controlnet

BASE = ["panorama", "a photo", "--height", "64", "--width", "128", "--stride", "4", "--steps", "2",
        "--method", "multidiffusion", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def controlnet_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_controlnet(tiny_dir, tmp_path_factory.mktemp("tiny-controlnet"))


def edges(path: Path, width: int = 128, height: int = 64) -> Path:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[height // 2 :, ::8] = 255  # stripes: an "edge map"
    Image.fromarray(pixels).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_controlnet_changes_the_image_scale_0_does_not_and_from_remakes_it(
    tiny_dir: Path, controlnet_dir: Path, tmp_path: Path, capsys
) -> None:
    model = ["--model", str(tiny_dir)]
    control = ["--controlnet", str(controlnet_dir), "--control-image", str(edges(tmp_path / "e.png"))]
    assert main([*BASE, *model, "--out", str(tmp_path / "plain.png")]) == 0
    assert main([*BASE, *model, *control, "--out", str(tmp_path / "c.png")]) == 0
    assert main([*BASE, *model, *control, "--control-scale", "0", "--out", str(tmp_path / "zero.png")]) == 0
    stored = json.loads(Image.open(tmp_path / "c.png").text["syncguide"])
    assert stored["control"] == [{"controlnet": str(controlnet_dir), "image": str(tmp_path / "e.png"), "scale": 1.0}]
    assert not np.array_equal(pixels(tmp_path / "c.png"), pixels(tmp_path / "plain.png"))
    assert np.array_equal(pixels(tmp_path / "zero.png"), pixels(tmp_path / "plain.png"))
    assert main(["panorama", "--from", str(tmp_path / "c.png"), "--out", str(tmp_path / "again.png")]) == 0
    assert np.array_equal(pixels(tmp_path / "again.png"), pixels(tmp_path / "c.png"))


def _sdxl_like(directory: Path, controlnet_dir: Path) -> Path:
    directory.mkdir()
    config = json.loads((controlnet_dir / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "addition_embed_type": "text_time"}))
    return directory


def _other_version(directory: Path, controlnet_dir: Path) -> Path:
    directory.mkdir()
    config = json.loads((controlnet_dir / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 48}))
    return directory


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no image", "--control-image: give one per --controlnet (got 0 for 1)"),
        ("missing image", "--control-image: "),
        ("wrong aspect", "--control-image: is 64 x 64 px, aspect ratio 1.000, but the canvas is 128 x 64"),
        ("two scales", "--control-scale: give one per --controlnet, or none (got 2 for 1)"),
        ("infinite scale", "--control-scale: must be a finite number; got inf"),
        ("sdxl controlnet", "is a ControlNet for SDXL, the model is Stable Diffusion 1.x/2.x"),
        ("other version", "has cross_attention_dim 48, the model's UNet"),
    ],
)
def test_bad_control_input_is_one_line(
    tiny_dir: Path, controlnet_dir: Path, tmp_path: Path, capsys, case: str, message: str
) -> None:
    image = str(edges(tmp_path / "e.png"))
    net = str(controlnet_dir)
    extra = {
        "no image": ["--controlnet", net],
        "missing image": ["--controlnet", net, "--control-image", str(tmp_path / "missing.png")],
        "wrong aspect": ["--controlnet", net, "--control-image", str(edges(tmp_path / "sq.png", 64))],
        "two scales": ["--controlnet", net, "--control-image", image, "--control-scale", "1", "--control-scale", "2"],
        "infinite scale": ["--controlnet", net, "--control-image", image, "--control-scale", "inf"],
        "sdxl controlnet": ["--controlnet", str(_sdxl_like(tmp_path / "xl", controlnet_dir)), "--control-image", image],
        "other version": [
            "--controlnet",
            str(_other_version(tmp_path / "v", controlnet_dir)),
            "--control-image",
            image,
        ],
    }[case]
    out = tmp_path / "out.png"
    assert main([*BASE, "--model", str(tiny_dir), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()
