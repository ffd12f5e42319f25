"""The page's own logic: PNG Info's "send to" fills a form from stored parameters, a drawn mask becomes a mask
file, and ``syncguide app`` refuses bad flags in one line before anything loads."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from syncguide.app.ui import _editor_mask, _sender
from syncguide.cli.main import main


def test_send_to_layout_fills_background_regions_and_leaves_unstored_fields() -> None:
    stored = {"background": "a sea", "seed": 7, "regions": [{"prompt": "hills", "box": "0,0,0.5,1"}], "text": "x"}
    targets = ["background", "seed", "region1_prompt", "region1_box", "region2_prompt", "width", "content"]
    values = _sender("layout", targets)({**stored, "content": "/etc/passwd"})
    assert values[:4] == ["a sea", 7, "hills", "0,0,0.5,1"]
    assert all(isinstance(v, dict) and v.get("__type__") == "update" for v in values[4:7])  # skipped: unchanged
    assert values[-1].selected == "layout"
    panorama = _sender("panorama", ["prompt"])({"background": "a sea"})
    assert panorama[0] == "a sea"


def test_a_drawn_mask_is_the_union_of_the_layers(tmp_path) -> None:
    a, b = np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8)
    a[:4, :, 3], b[:, :2, 3] = 255, 30
    paths = []
    for k, layer in enumerate((a, b)):
        paths.append(str(tmp_path / f"layer{k}.png"))
        Image.fromarray(layer, "RGBA").save(paths[-1])
    mask = np.asarray(Image.open(_editor_mask({"background": None, "layers": paths, "composite": None})))
    expected = ((a[..., 3] > 0) | (b[..., 3] > 0)) * 255
    assert np.array_equal(mask, expected)
    assert _editor_mask({"background": "up.png", "layers": [], "composite": None}) == "up.png"
    assert _editor_mask({"background": None, "layers": [], "composite": None}) is None


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--port", "0"], "--port: must be 1 .. 65535"),
        (["--max-steps", "0"], "--max-steps: must be >= 1"),
        (["--max-upload-mb", "-1"], "--max-upload-mb: must be > 0"),
        (["--model", "/no/such/model"], "--model"),
    ],
)
def test_bad_app_flags_are_one_line(flag, message, capsys, tmp_path) -> None:
    assert main(["app", *flag, "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("syncguide app: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_the_page_has_every_tab_and_endpoint(tmp_path) -> None:
    from syncguide.app.service import Service
    from syncguide.app.ui import build

    (tmp_path / "up").mkdir()
    page = build(Service(None, tmp_path / "out", tmp_path / "up"))
    assert isinstance(page, gr.Blocks)
    names = {fn.api_name for fn in page.fns.values() if fn.api_visibility == "public"}
    assert {"panorama", "layout", "generate", "png_info"} <= names
