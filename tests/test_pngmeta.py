"""PNG settings: AUTOMATIC1111's text under ``parameters``, our JSON under ``syncguide``; ``info`` and ``--from``."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from syncguide.pngmeta import JSON_KEY, PARAMETERS_KEY, a1111_text, parse_a1111, png_bytes, read_parameters
from test_cli import FAST, run_cli

A1111_EXAMPLE = (
    "a castle on a hill, masterpiece\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 768x512,"
    ' Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", Version: v1.10.1'
)


def _png(tmp_path, chunks: dict[str, str], name: str = "x.png"):
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_a1111_readers_get_their_format_and_we_keep_the_exact_json(tmp_path) -> None:
    params = {"prompt": "a lake, at dusk", "negative_prompt": "fog", "steps": 50, "cfg": 7.5, "seed": 2**64 - 1}
    params |= {"width": 3072, "height": 512, "scheduler": "ddim", "sync_weight": 20.0, "circular": True}
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes(Image.new("RGB", (4, 4)), params))
    with Image.open(path) as image:
        text, stored = image.text[PARAMETERS_KEY], json.loads(image.text[JSON_KEY])
    first, negative, pairs = text.split("\n")
    assert first == "a lake, at dusk" and negative == "Negative prompt: fog"
    assert pairs.startswith("Steps: 50, Sampler: DDIM, CFG scale: 7.5, Seed: 18446744073709551615, Size: 3072x512")
    assert stored == params and read_parameters(path) == params


def test_another_tools_png_is_read_from_its_text(tmp_path) -> None:
    parsed = read_parameters(_png(tmp_path, {PARAMETERS_KEY: A1111_EXAMPLE}))
    assert parsed["prompt"] == "a castle on a hill, masterpiece" and parsed["negative_prompt"] == "blurry, lowres"
    assert (parsed["steps"], parsed["cfg"], parsed["seed"]) == (28, 6.5, 1234)
    assert (parsed["width"], parsed["height"], parsed["scheduler"]) == (768, 512, "dpm++")
    assert parsed["lora_hashes"] == "a: 1, b: 2" and parsed["schedule_type"] == "Karras"


def test_pngs_written_before_the_split_are_read(tmp_path) -> None:
    assert read_parameters(_png(tmp_path, {PARAMETERS_KEY: '{"prompt": "old", "steps": 3}'})) == {
        "prompt": "old",
        "steps": 3,
    }
    with pytest.raises(ValueError, match="not an object"):
        read_parameters(_png(tmp_path, {JSON_KEY: "[1, 2]"}, "list.png"))
    with pytest.raises(KeyError):
        read_parameters(_png(tmp_path, {}, "none.png"))


TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,:\"'-[]{}()", min_size=1, max_size=20)
VALUE = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    TEXT,
    st.lists(st.integers(0, 100), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(
    prompt=TEXT.filter(lambda t: t.strip() == t and not t.startswith("Negative prompt:")),
    extra=st.dictionaries(st.from_regex(r"[a-z]{1,8}(_[a-z]{1,8})?", fullmatch=True), VALUE, max_size=5),
    steps=st.integers(1, 1000),
    cfg=st.floats(0, 30, allow_nan=False),
)
@example(prompt="0", extra={"a": "null"}, steps=1, cfg=0.0)  # found by hypothesis: "null" came back as None
@example(
    prompt="0", extra={"a": "[1]", "b": "true", "c": "1e5", "d": "nan", "e": '"[1]"', "f": '"x"'}, steps=1, cfg=0.0
)
@example(prompt="0", extra={"a": '"abc', "b": "[a", "c": "{}", "d": [1, 2]}, steps=1, cfg=0.0)
def test_the_a1111_text_round_trips(prompt: str, extra: dict, steps: int, cfg: float) -> None:
    params = {**extra, "prompt": prompt, "steps": steps, "cfg": cfg, "width": 1024, "height": 512}
    params.pop("sampler", None), params.pop("size", None)
    assert parse_a1111(a1111_text(params)) == params


def test_info_prints_what_panorama_stored(tiny_dir, tmp_path, capsys) -> None:
    out = tmp_path / "a.png"
    assert run_cli(["panorama", "a lake", "--model", str(tiny_dir), *FAST, "--out", str(out), "--cfg", "5"]) == 0
    capsys.readouterr()
    assert run_cli(["info", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == read_parameters(out) and shown["cfg"] == 5.0 and shown["prompt"] == "a lake"
    assert run_cli(["info", str(out), "--format", "a1111"]) == 0
    assert capsys.readouterr().out.startswith("a lake\nSteps: 3, Sampler: DDIM, CFG scale: 5.0, Seed: 0, Size: 128x64")


def test_from_reruns_a_png_and_later_options_override(tiny_dir, tmp_path, capsys) -> None:
    first, second, third = (tmp_path / f"{n}.png" for n in "abc")
    argv = ["panorama", "a lake", "--model", str(tiny_dir), *FAST, "--seed", "7", "--cfg", "4"]
    assert run_cli([*argv, "--out", str(first)]) == 0
    assert run_cli(["panorama", "--from", str(first), "--out", str(second)]) == 0
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    assert run_cli(["panorama", "--from", str(first), "--seed", "8", "--out", str(third)]) == 0
    stored = read_parameters(third)
    assert stored["seed"] == 8 and stored["cfg"] == 4.0 and stored["prompt"] == "a lake"
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(third)))
    capsys.readouterr()


def test_layout_from_keeps_regions_unless_new_ones_are_given(tiny_dir, tmp_path, capsys) -> None:
    first, second, third = (tmp_path / f"{n}.png" for n in "abc")
    base = ["layout", "--model", str(tiny_dir), *FAST, "--method", "multidiffusion"]
    assert run_cli([*base, "--background", "sky", "--box", "a tree", "0,0,0.5,1", "--out", str(first)]) == 0
    assert run_cli(["layout", "--from", str(first), "--out", str(second)]) == 0
    assert read_parameters(second)["regions"] == [{"prompt": "a tree", "box": "0,0,0.5,1"}]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    assert run_cli(["layout", "--from", str(first), "--box", "a rock", "0.5,0,1,1", "--out", str(third)]) == 0
    assert read_parameters(third)["regions"] == [{"prompt": "a rock", "box": "0.5,0,1,1"}]
    assert read_parameters(third)["background"] == "sky"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("chunks", "rule"),
    [
        (None, "does not exist"),
        ({}, "stores no generation settings"),
        ({JSON_KEY: "[1]"}, "cannot be read"),
        ({PARAMETERS_KEY: "just a prompt"}, "cannot be read"),
        ({JSON_KEY: '{"prompt": "x", "cfg": NaN}'}, "cannot be read"),
    ],
)
def test_bad_from_files_are_one_line(tmp_path, capsys, chunks, rule: str) -> None:
    path = tmp_path / "missing.png" if chunks is None else _png(tmp_path, chunks)
    before = sorted(tmp_path.iterdir())
    for argv, prefix in (
        (["panorama", "--from", str(path), "--out", str(tmp_path / "o.png")], "syncguide panorama: error: --from:"),
        (["info", str(path)], "syncguide info: error: FILE.png:"),
    ):
        assert run_cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(prefix) and rule in err, err
    assert sorted(tmp_path.iterdir()) == before


def test_a_stored_value_that_breaks_a_rule_is_refused_as_typed(tmp_path, capsys) -> None:
    path = _png(tmp_path, {JSON_KEY: json.dumps({"prompt": "x", "steps": 0, "scheduler": "nope"})})
    assert run_cli(["panorama", "--from", str(path), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scheduler" in err and not (tmp_path / "o.png").exists()


def test_a_prompt_is_required_without_from(tmp_path, capsys) -> None:
    assert run_cli(["panorama", "--out", str(tmp_path / "o.png")]) == 2
    expected = "syncguide panorama: error: PROMPT: a prompt is required (or --from FILE.png)"
    assert capsys.readouterr().err.strip() == expected
    assert run_cli(["layout", "--box", "a", "0,0,1,1", "--out", str(tmp_path / "o.png")]) == 2
    assert "--background: a prompt is required" in capsys.readouterr().err


def test_generate_from_a_sample_remakes_that_sample_alone(tmp_path, capsys) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    argv = ["generate", "--n", "2", "--batch-size", "2", "--steps", "2", "--seed", "3", "--out", str(first)]
    assert run_cli(argv) == 0
    (sample,) = [p for p in first.iterdir() if p.name.endswith("-001.png")]
    assert run_cli(["generate", "--from", str(sample), "--out", str(second)]) == 0
    assert [p.name for p in second.iterdir()] == [sample.name]
    remade = np.asarray(Image.open(second / sample.name), dtype=int)
    assert np.abs(remade - np.asarray(Image.open(sample), dtype=int)).max() <= 1
    capsys.readouterr()
