import json

from PIL import Image

from syncguide.cli.io import read_parameters
from test_cli import run_cli

FAST = ["--steps", "2", "--height", "64", "--width", "128", "--stride", "4", "--perceptual", "lpips-random"]


def mask_file(path, white_box=(0, 0, 50, 40), size=(200, 80)):
    image = Image.new("L", size, 0)
    if white_box:
        image.paste(255, white_box)
    image.save(path)
    return str(path)


def test_layout_writes_png_with_parameters(tiny_dir, tmp_path, capsys) -> None:
    out, mask = tmp_path / "layout.png", mask_file(tmp_path / "mask.png")
    argv = ["layout", "--background", "a photo of the sea", "--region", "snow", mask, "--box", "hills", "0.5,0,1,1"]
    assert run_cli([*argv, "--model", str(tiny_dir), *FAST, "--sync-steps", "1", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = read_parameters(out)
    assert {k: v for k, v in printed.items() if k not in ("out", "seconds")} == stored
    assert stored["background"] == "a photo of the sea" and "prompt" not in stored
    assert stored["regions"] == [{"prompt": "snow", "mask": mask}, {"prompt": "hills", "box": "0.5,0,1,1"}]
    assert stored["bootstrap"] == 0.2 and stored["method"] == "syncdiffusion" and stored["steps"] == 2
    with Image.open(out) as image:
        assert image.size == (128, 64)


def test_bad_layouts_are_one_line_exit_2_nothing_written(tiny_dir, tmp_path, capsys) -> None:
    (tmp_path / "text.png").write_text("not an image")
    black = mask_file(tmp_path / "black.png", white_box=None)
    speck = mask_file(tmp_path / "speck.png", white_box=(0, 0, 2, 2))  # less than half of any latent pixel
    cases = [
        (["--box", "snow", "0.5,0,1.2,1"], "--box"),  # outside the canvas
        (["--box", "snow", "-0.1,0,0.5,1"], "--box"),
        (["--box", "snow", "0.5,0,0.2,1"], "--box"),  # x1 < x0
        (["--box", "snow", "0.5,0,1"], "--box"),
        (["--box", "snow", "a,b,c,d"], "--box"),
        (["--box", "snow", "0.5,0,0.505,1"], "--box"),  # thinner than a latent pixel
        (["--region", "snow", black], "--region"),  # covers nothing
        (["--region", "snow", speck], "--region"),
        (["--region", "snow", str(tmp_path / "missing.png")], "--region"),
        (["--region", "snow", str(tmp_path / "text.png")], "--region"),  # unreadable
        (["--bootstrap", "1.5"], "--bootstrap"),
        (["--stride", "0"], "--stride"),
    ]
    out = tmp_path / "out.png"
    for extra, option in cases:
        argv = ["layout", "--background", "sea", "--model", str(tiny_dir), *FAST, "--out", str(out), *extra]
        assert run_cli(argv) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and option in err and "error" in err, (extra, err)
        assert not out.exists()
