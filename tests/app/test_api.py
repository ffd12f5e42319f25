"""The web app through Gradio's client against a launched app on localhost: each api_name returns PNGs whose
stored parameters match the request, a bad value is the command line's message, cancel stops a long run, and
the queue serves concurrent clients one at a time, in order."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client, handle_file

from syncguide.cli.main import main
from syncguide.pngmeta import read_parameters


def files(result) -> list[str]:
    """The PNG paths of an endpoint's first output (a gr.File of several files)."""
    first = result[0]
    return [f if isinstance(f, str) else f["path"] for f in (first if isinstance(first, list) else [first])]


def test_panorama_returns_the_png_with_the_requests_parameters(client) -> None:
    result = client.predict(
        prompt="a photo of the sea", width=256, steps=5, seed=3, sync_mode="fast", api_name="/panorama"
    )
    (png,) = files(result)
    stored = read_parameters(png)
    assert (stored["prompt"], stored["width"], stored["steps"], stored["seed"]) == ("a photo of the sea", 256, 5, 3)
    assert stored["sync_mode"] == "fast" and stored == result[3]
    assert stored["cfg"] == 7.5 and stored["height"] == 64  # unset: the command line's defaults


def test_layout_and_generate_endpoints(client) -> None:
    result = client.predict(
        background="a photo of the sea",
        region1_prompt="mountains",
        region1_box="0.5,0,1,1",
        width=256,
        steps=4,
        api_name="/layout",
    )
    stored = read_parameters(files(result)[0])
    assert stored["background"] == "a photo of the sea"
    assert stored["regions"] == [{"prompt": "mountains", "box": "0.5,0,1,1"}]
    samples = client.predict(text="a red square", n=2, steps=5, seed=4, api_name="/generate")
    paths = files(samples)
    assert [read_parameters(p)["index"] for p in paths] == [0, 1]
    assert {read_parameters(p)["text"] for p in paths} == {"a red square"}
    assert all(read_parameters(p)["seed"] == 4 for p in paths)


def test_png_info_reads_back_what_the_app_wrote(client) -> None:
    png = files(client.predict(prompt="a photo of a lake", width=128, steps=3, seed=11, api_name="/panorama"))[0]
    stored = client.predict(handle_file(png), api_name="/png_info")
    assert stored["prompt"] == "a photo of a lake" and stored["seed"] == 11


def test_a_bad_value_is_the_command_lines_message(client, capsys, tmp_path) -> None:
    assert main(["panorama", "x", "--width", "1002", "--out", str(tmp_path / "x.png")]) == 2
    expected = capsys.readouterr().err.strip().split(": error: ", 1)[1]
    with pytest.raises(Exception) as caught:
        client.predict(prompt="x", width=1002, api_name="/panorama")
    assert str(caught.value).strip().endswith(expected)
    with pytest.raises(Exception, match=r"201 is greater than maximum value 200"):  # the slider is the app's limit
        client.predict(prompt="x", steps=201, api_name="/panorama")


def wait_for(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_cancel_stops_a_long_run_within_a_step(app, client) -> None:
    _, service, outputs = app
    before, runs = set(outputs.glob("*.png")), len(service.runs)
    job = client.submit(prompt="a photo of the sea", width=1024, steps=200, api_name="/panorama")
    wait_for(lambda: len(service.runs) > runs and service.runs[-1].last_step >= 2)
    run = service.runs[-1]
    job.cancel()
    assert run.wait(60)
    assert run.outcome == "cancelled" and run.last_step < 200
    assert set(outputs.glob("*.png")) == before  # nothing written


def test_the_queue_serves_two_clients_in_order(app) -> None:
    url, service, _ = app
    runs = len(service.runs)
    first = Client(url, verbose=False).submit(prompt="a photo of the sea", width=512, steps=8, api_name="/panorama")
    wait_for(lambda: len(service.runs) > runs)  # the first is running
    second = Client(url, verbose=False).submit(prompt="a photo of a lake", width=128, steps=3, api_name="/panorama")
    a, b = first.result(timeout=300), second.result(timeout=300)
    assert read_parameters(files(a)[0])["prompt"] == "a photo of the sea"
    assert read_parameters(files(b)[0])["prompt"] == "a photo of a lake"
    run_a, run_b = service.runs[runs], service.runs[runs + 1]
    assert run_a.ended_at <= run_b.started_at  # one generation at a time, the first first
