import json
import subprocess
import sys

from PIL import Image

from syncguide.cli.io import read_parameters
from syncguide.cli.main import main

FAST = ["--steps", "3", "--height", "64", "--width", "128", "--stride", "4", "--perceptual", "lpips-random"]


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code)


def test_happy_path_writes_png_with_parameters(tiny_dir, tmp_path, capsys) -> None:
    out = tmp_path / "pano.png"
    assert (
        run_cli(["panorama", "a photo of mountains at sunset", "--model", str(tiny_dir), *FAST, "--out", str(out)]) == 0
    )
    captured = capsys.readouterr()
    printed = json.loads(captured.out.strip().splitlines()[-1])
    stored = read_parameters(out)
    assert {k: v for k, v in printed.items() if k not in ("out", "seconds")} == stored
    assert stored["prompt"] == "a photo of mountains at sunset" and stored["method"] == "syncdiffusion"
    assert stored["steps"] == 3 and stored["stride"] == 4 and stored["window"] == 8
    assert "3/3" in captured.err  # the progress bar over steps
    with Image.open(out) as image:
        assert image.size == (128, 64) and image.mode == "RGB"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pano.png"]  # no temporary files left


def test_same_arguments_same_bytes_and_methods_differ(tiny_dir, tmp_path) -> None:
    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "md")]
    common = ["panorama", "a lake at night", "--model", str(tiny_dir), *FAST, "--seed", "7"]
    assert run_cli([*common, "--out", str(paths[0])]) == 0
    assert run_cli([*common, "--out", str(paths[1])]) == 0
    assert run_cli([*common, "--method", "multidiffusion", "--out", str(paths[2])]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_existing_output_is_kept_unless_overwrite(tiny_dir, tmp_path, capsys) -> None:
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    argv = ["panorama", "hills", "--model", str(tiny_dir), *FAST, "--method", "multidiffusion", "--out", str(out)]
    assert run_cli(argv) == 2
    assert out.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    assert run_cli([*argv, "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def _bad_cases(tmp_path, tiny_dir):
    not_a_pipeline = tmp_path / "empty-model"
    not_a_pipeline.mkdir()
    return [
        (["--height", "60"], "--height"),
        (["--width", "100"], "--width"),
        (["--height", "32"], "--height"),
        (["--width", "0"], "--width"),
        (["--stride", "0"], "--stride"),
        (["--stride", "9"], "--stride"),
        (["--circular", "--stride", "3"], "--stride"),
        (["--sync-weight", "-1"], "--sync-weight"),
        (["--sync-decay", "-0.5"], "--sync-decay"),
        (["--sync-steps", "-2"], "--sync-steps"),
        (["--sync-every", "0"], "--sync-every"),
        (["--steps", "0"], "--steps"),
        (["--scheduler", "euler"], "--scheduler"),
        (["--method", "best"], "--method"),
        (["--model", str(tmp_path / "missing")], "--model"),
        (["--model", str(not_a_pipeline)], "--model"),
        (["--model", "./relative/missing"], "--model"),
        (["--out", str(tmp_path / "no-such-dir" / "x.png")], "--out"),
        (["--out", str(tmp_path / "x.jpg")], "--out"),
        (["--device", "toaster"], "--device"),
    ]


def test_bad_input_is_one_line_exit_2_nothing_written(tiny_dir, tmp_path, capsys) -> None:
    out = tmp_path / "out.png"
    for extra, option in _bad_cases(tmp_path, tiny_dir):
        argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(out), *extra]
        assert run_cli(argv) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and option in err and "error" in err, (extra, err)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-model"]


def test_console_error_has_no_traceback(tiny_dir, tmp_path) -> None:
    argv = [sys.executable, "-m", "syncguide.cli.main", "panorama", "a", "--model", str(tiny_dir), "--height", "30"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "syncguide panorama: error: --height: must be a positive multiple of 8; got 30"
    assert not list(tmp_path.iterdir())
