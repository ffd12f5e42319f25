"""The web app's engine without a server: the form means what the command line means (same image, same
parameters, same one-line errors), the app's limits, uploaded-file checks, and cancelling a run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.app.runner import Cancelled, Run
from syncguide.app.service import Limits, Service
from syncguide.cli.main import main
from syncguide.pngmeta import read_parameters

SMALL = {"prompt": "a photo of the sea", "width": 128, "steps": 4, "seed": 5}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    root = tmp_path_factory.mktemp("service")
    (root / "uploads").mkdir()
    return Service(None, root / "out", root / "uploads", Limits(max_width=1024, max_steps=50, max_upload_mb=0.05))


def finish(run: Run):
    events = list(run.iterate())
    assert events[-1].kind in ("done", "error")
    if events[-1].kind == "error":
        raise events[-1].error
    return events, events[-1].result


def cli_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The message after ``error:`` of the command line's one-line error for ``argv`` (exit status 2)."""
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own errors exit from the parser
        status = exit.code
    assert status == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    return line.split(": error: ", 1)[1]


def test_the_form_makes_the_command_lines_image_and_parameters(service, tmp_path) -> None:
    values = {**SMALL, "sync_mode": "fast", "circular": True, "cfg": 5.0}
    _, result = finish(service.start("panorama", values))
    out = tmp_path / "cli.png"
    argv = ["panorama", SMALL["prompt"], "--width", "128", "--steps", "4", "--seed", "5", "--sync-mode", "fast"]
    assert main([*argv, "--circular", "--cfg", "5", "--device", "cpu", "--out", str(out)]) == 0
    app_png = result.paths[0]
    assert read_parameters(app_png) == read_parameters(out) == result.parameters
    assert np.array_equal(np.asarray(Image.open(app_png)), np.asarray(Image.open(out)))


def test_defaults_are_the_command_lines(service) -> None:
    defaults = service.defaults("panorama")
    _, result = finish(service.start("panorama", {**defaults, **SMALL}))
    stored = result.parameters
    for name in ("height", "cfg", "stride", "sync_weight", "sync_decay", "sync_mode", "scheduler", "method"):
        assert stored[name] == defaults[name], name
    assert service.argv("panorama", {"prompt": "x", "width": None, "text": ""}) == ["panorama", "--", "x"]


@pytest.mark.parametrize(
    "values, argv",
    [
        ({"width": 1002}, ["--width", "1002"]),
        ({"steps": 0}, ["--steps", "0"]),
        ({"width": "wide"}, ["--width", "wide"]),
        ({"sync_mode": "quick"}, ["--sync-mode", "quick"]),
        ({"stride": 17}, ["--stride", "17"]),
    ],
)
def test_bad_values_give_the_command_lines_message(service, capsys, tmp_path, values, argv) -> None:
    expected = cli_error(["panorama", "x", *argv, "--out", str(tmp_path / "x.png")], capsys)
    with pytest.raises(Exception) as caught:
        finish(service.start("panorama", {"prompt": "x", **values}))
    from syncguide.cli.options import error_message

    assert error_message(caught.value) == expected
    assert not list((tmp_path).glob("*.png"))


def test_the_apps_limits_name_the_option_and_the_flag(service) -> None:
    with pytest.raises(ValueError, match=r"--width: at most 1024 in this app \(syncguide app --max-width\)"):
        service.start("panorama", {"prompt": "x", "width": 2048})
    with pytest.raises(ValueError, match=r"--steps: at most 50 .*--max-steps"):
        service.start("panorama", {"prompt": "x", "steps": 51})
    with pytest.raises(ValueError, match=r"--n: at most 16 .*--max-samples"):
        service.start("generate", {"n": 17})


def test_uploads_are_read_only_from_the_upload_folder_and_checked(service, tmp_path) -> None:
    good = service.uploads / "good.png"
    Image.new("RGB", (16, 16), "red").save(good)
    assert service.check_upload(str(good), "style") == good.resolve()
    assert service.check_upload({"path": str(good)}, "style") == good.resolve()
    outside = tmp_path / "secret.png"
    Image.new("RGB", (16, 16)).save(outside)
    with pytest.raises(ValueError, match="style: only files uploaded to this app"):
        service.check_upload(str(outside), "style")
    with pytest.raises(ValueError, match="style: only files uploaded"):
        service.check_upload(str(service.uploads / ".." / "secret.png"), "style")
    (service.uploads / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="content: "):
        service.check_upload(str(service.uploads / "junk.png"), "content")
    big = service.uploads / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)).save(big)
    with pytest.raises(ValueError, match=r"content: at most 0.05 MB"):
        service.check_upload(str(big), "content")
    with pytest.raises(ValueError, match="content: only files uploaded"):
        service.start("panorama", {"prompt": "x", "content": str(outside)})


def test_layout_regions_and_png_info(service) -> None:
    values = {**SMALL, "background": "a photo of the sea", "region1_prompt": "mountains", "region1_box": "0,0,0.5,1"}
    del values["prompt"]
    _, result = finish(service.start("layout", values))
    stored = service.png_info(str(_upload(service, result.paths[0])))
    assert stored["background"] == "a photo of the sea"
    assert stored["regions"] == [{"prompt": "mountains", "box": "0,0,0.5,1"}]
    with pytest.raises(ValueError, match="region2_box: region 2 needs a box"):
        service.start("layout", {**values, "region2_prompt": "a lake"})


def _upload(service: Service, path: Path) -> Path:
    target = service.uploads / path.name
    target.write_bytes(path.read_bytes())
    return target


def test_a_cancelled_run_stops_within_a_step_and_writes_nothing(service) -> None:
    before = set(service.outputs.glob("*.png"))
    run = service.start("panorama", {**SMALL, "steps": 50, "width": 512})
    for event in run.iterate():
        if event.kind == "progress" and event.step >= 2:
            run.cancel()
            stopped_at = event.step
        if event.kind in ("done", "error"):
            break
    assert isinstance(event.error, Cancelled)
    assert run.outcome == "cancelled" and run.last_step <= stopped_at + 1 < 50
    assert set(service.outputs.glob("*.png")) == before


def test_runs_on_one_model_take_turns() -> None:
    lock, order = threading.Lock(), []

    def work(name: str):
        def body(run: Run) -> str:
            order.append(f"{name} start")
            time.sleep(0.2)
            order.append(f"{name} end")
            return name

        return body

    first, second = Run(work("a"), lock), Run(work("b"), lock)
    assert finish(first)[1] == "a" and finish(second)[1] == "b"
    assert order in (["a start", "a end", "b start", "b end"], ["b start", "b end", "a start", "a end"])
    with lock:  # cancelled while waiting for the model: never starts
        cancelled = Run(work("c"), lock)
        cancelled.cancel()
    with pytest.raises(Cancelled):
        finish(cancelled)
