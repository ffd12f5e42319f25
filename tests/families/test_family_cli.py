"""``syncguide panorama/layout --model`` on SDXL, FLUX.1 and SD3 checkpoints: the family is read from the files,
its defaults fill unset options, and what the family cannot take is one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from syncguide.cli.main import main
from syncguide.pngmeta import read_parameters

DIRS = {"sdxl": "sdxl_dir", "flux": "flux_dir", "sd3": "sd3_dir"}
# FLUX's window is FluxPipeline's 128 latent px whatever the model (256 px with the tiny VAE's scale 2)
SIZES = {"sdxl": (16, 48), "flux": (256, 384), "sd3": (16, 48)}
FAMILY_DEFAULTS = {"sdxl": ("ddim", 5.0), "flux": ("flow-euler", 3.5), "sd3": ("flow-euler", 7.0)}


@pytest.mark.parametrize("name", DIRS)
def test_panorama_runs_on_every_family_with_its_defaults(name: str, request, tmp_path: Path, capsys) -> None:
    model = request.getfixturevalue(DIRS[name])
    height, width = SIZES[name]
    out = tmp_path / "p.png"
    method = ["--method", "multidiffusion"] if name == "flux" else ["--perceptual", "lpips-random"]
    argv = ["panorama", "a photo of the sea", "--model", str(model), "--height", str(height), "--width", str(width)]
    code = main([*argv, "--steps", "2", *method, "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = read_parameters(out)
    scheduler, cfg = FAMILY_DEFAULTS[name]
    assert stored["scheduler"] == printed["scheduler"] == scheduler and stored["cfg"] == cfg
    assert Image.open(out).size == (width, height)


def test_layout_runs_on_a_flow_family(sd3_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "l.png"
    argv = ["layout", "--background", "a photo of the sea", "--box", "snow", "0,0,0.5,1", "--out", str(out)]
    code = main(
        [
            *argv,
            "--model",
            str(sd3_dir),
            "--height",
            "16",
            "--width",
            "48",
            "--steps",
            "2",
            "--method",
            "multidiffusion",
        ]
    )
    assert code == 0
    assert read_parameters(out)["regions"] == [{"prompt": "snow", "box": "0,0,0.5,1"}]
    assert Image.open(out).size == (48, 16)


def test_a_scheduler_the_family_cannot_use_is_one_line(flux_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.png"
    code = main(["panorama", "x", "--model", str(flux_dir), "--scheduler", "ddim", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--scheduler" in err and "flow-euler" in err
    assert not out.exists()


def test_an_unsupported_family_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    model = tmp_path / "kandinsky"
    model.mkdir()
    index = {"_class_name": "KandinskyV22Pipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    (model / "model_index.json").write_text(json.dumps(index))
    code = main(["panorama", "x", "--model", str(model), "--out", str(tmp_path / "p.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "KandinskyV22Pipeline" in err and "FluxPipeline" in err and "StableDiffusionXLPipeline" in err
