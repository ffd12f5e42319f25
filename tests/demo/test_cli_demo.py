import json

import pytest

from syncguide.cli.io import read_parameters
from syncguide.cli.main import main
from syncguide.demo.world import generate, labels_to_json


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def test_demo_world_writes_the_panorama_and_its_labels(tmp_path, capsys) -> None:
    out = tmp_path / "world.png"
    assert run_cli(["demo", "world", "--seed", "5", "--width", "200", "--time", "night", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    image, labels = generate(5, 200, time="night")
    assert printed["labels"] == labels_to_json(labels) == read_parameters(out)["labels"]
    assert printed["labels"]["time"] == "night"
    from PIL import Image

    with Image.open(out) as png:
        assert png.size == (200, 64)
        assert (png.convert("RGB").tobytes()) == image.tobytes()


@pytest.mark.parametrize(
    ("extra", "option"),
    [(["--width", "10"], "--width"), (["--time", "noon"], "--time"), (["--season", "spring"], "--season")],
)
def test_demo_world_bad_input(tmp_path, capsys, extra, option) -> None:
    out = tmp_path / "w.png"
    assert run_cli(["demo", "world", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err
    assert not out.exists()


def test_demo_train_rejects_missing_inputs(tmp_path, capsys) -> None:
    argv = ["demo", "train", "sd", "--out", str(tmp_path / "sd"), "--vae", str(tmp_path / "nope")]
    assert run_cli(argv) == 2
    assert "--vae" in capsys.readouterr().err
    assert not (tmp_path / "sd").exists()
