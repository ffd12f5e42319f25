"""``--controlnet`` on SDXL and FLUX.1 checkpoints: the family's ControlNet class loads and changes the image,
``--control-scale 0`` is the plain run pixel for pixel; a ControlNet of another family, or SD3 at all, is one line
with exit status 2 and no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.cli.main import main
from syncguide.models.tiny import save_tiny_controlnet

DIRS = {"sdxl": "sdxl_dir", "flux": "flux_dir"}
SIZES = {"sdxl": (16, 48), "flux": (256, 384)}  # FLUX's window: FluxPipeline's 128 latent px, 256 px here


@pytest.fixture(scope="module")
def controlnets(sdxl_dir: Path, flux_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = tmp_path_factory.mktemp("family-controlnets")
    return {name: save_tiny_controlnet(model, made / name) for name, model in (("sdxl", sdxl_dir), ("flux", flux_dir))}


def blocks(path: Path, height: int, width: int) -> Path:
    cells = np.random.default_rng(3).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    Image.fromarray(cells.repeat(8, 0).repeat(8, 1)).save(path)
    return path


def panorama(model: Path, height: int, width: int, out: Path, *extra: str) -> int:
    argv = ["panorama", "a photo of the sea", "--model", str(model), "--height", str(height), "--width", str(width)]
    return main([*argv, "--steps", "2", "--method", "multidiffusion", "--device", "cpu", *extra, "--out", str(out)])


@pytest.mark.parametrize("name", DIRS)
def test_controlnet_changes_the_image_and_scale_0_does_not(name: str, controlnets, request, tmp_path: Path) -> None:
    model, (height, width) = request.getfixturevalue(DIRS[name]), SIZES[name]
    image = str(blocks(tmp_path / "control.png", height, width))
    net = ["--controlnet", str(controlnets[name]), "--control-image", image]
    assert panorama(model, height, width, tmp_path / "plain.png") == 0
    assert panorama(model, height, width, tmp_path / "c.png", *net) == 0
    assert panorama(model, height, width, tmp_path / "zero.png", *net, "--control-scale", "0") == 0
    plain, controlled, zero = (np.asarray(Image.open(tmp_path / f)) for f in ("plain.png", "c.png", "zero.png"))
    assert np.array_equal(zero, plain)
    assert not np.array_equal(controlled, plain)


@pytest.mark.parametrize(("model", "net", "message"), [
    ("sdxl_dir", "flux", "is a ControlNet for FLUX.1, the model is SDXL"),
    ("flux_dir", "sdxl", "is a ControlNet for SDXL, the model is FLUX.1"),
    ("sd3_dir", "sdxl", "not supported for SD3"),
])  # fmt: skip
def test_a_controlnet_of_another_family_is_one_line(
    model: str, net: str, message: str, controlnets, request, tmp_path: Path, capsys
) -> None:
    out, (height, width) = tmp_path / "p.png", SIZES.get(model.removesuffix("_dir"), (16, 48))
    image = str(blocks(tmp_path / "control.png", height, width))
    given = ["--controlnet", str(controlnets[net]), "--control-image", image]
    code = panorama(request.getfixturevalue(model), height, width, out, *given)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()
