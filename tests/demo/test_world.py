"""Tests of the procedural demo world (CPU, fast)."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from syncguide.demo import (
    GLOBAL_ATTRIBUTES,
    HEIGHT,
    SEASONS,
    SEGMENT_MAX,
    SEGMENT_MIN,
    TERRAINS,
    TIMES,
    VOCABULARY,
    WATERS,
    Segment,
    WorldLabels,
    caption,
    caption_for_crop,
    crop_dataset,
    generate,
    labels_from_json,
    labels_to_json,
    render,
    sample_labels,
    save_examples,
)

SEASON_WORD = {"snow": "snowy", "autumn": "autumn", "summer": "summer"}
TIME_WORD = {"day": "day", "sunset": "sunset", "night": "night"}


def plain_labels(width=256, time="day", season="summer", terrain="plains", water="none", **kw) -> WorldLabels:
    return WorldLabels(time, season, (Segment(0, width, terrain, water, **kw),), width)


# ------------------------------------------------------------------------------------------- basics


def test_constants():
    assert GLOBAL_ATTRIBUTES == {"time": TIMES, "season": SEASONS}
    assert TIMES == ("day", "sunset", "night")
    assert SEASONS == ("summer", "autumn", "snow")
    assert TERRAINS == ("mountains", "hills", "plains")
    assert WATERS == ("sea", "lake", "none")
    assert sorted(set(VOCABULARY)) == VOCABULARY
    assert all(w == w.lower() and w.isalpha() for w in VOCABULARY)
    assert len(VOCABULARY) < 60


def test_determinism():
    a, la = generate(7, 256)
    b, lb = generate(7, 256)
    np.testing.assert_array_equal(a, b)
    assert la == lb
    c, _ = generate(8, 256)
    assert not np.array_equal(a, c)
    labels = plain_labels()
    np.testing.assert_array_equal(render(labels, 3), render(labels, np.random.default_rng(3)))
    assert not np.array_equal(render(labels, 3), render(labels, 4))


@pytest.mark.parametrize("width", [64, 97, 200, 1024])
def test_shape_dtype(width):
    image, labels = generate(width, width)
    assert image.shape == (HEIGHT, width, 3)
    assert image.dtype == np.uint8
    assert labels.width == width
    assert image.std() > 5  # not flat


@pytest.mark.parametrize("width", [64, 127, 200, 201, 263, 264, 512, 1000, 2048])
def test_segments_tile_the_width(width):
    for seed in range(5):
        labels = sample_labels(np.random.default_rng(seed), width)
        segments = labels.segments
        assert segments[0].start == 0 and segments[-1].end == width
        assert all(s.end == t.start for s, t in itertools.pairwise(segments))
        assert all(SEGMENT_MIN <= s.width <= SEGMENT_MAX for s in segments)
        columns = labels.column_labels()
        for key in ("terrain", "water", "trees", "houses"):
            assert columns[key].shape == (width,)
        assert columns["terrain"].max() < len(TERRAINS) and columns["water"].max() < len(WATERS)


def test_fixed_globals():
    for t in TIMES:
        for s in SEASONS:
            _, labels = generate(1, 128, time=t, season=s)
            assert (labels.time, labels.season) == (t, s)


def test_render_time():
    labels = sample_labels(0, 1024)
    render(labels, 0)
    best = min(_timed(lambda: render(labels, 1)) for _ in range(3))
    assert best < 0.5


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------ labels are right


def test_night_is_dark():
    labels = sample_labels(5, 512, time="day")
    day = render(labels, 5).astype(float)
    night = render(WorldLabels("night", labels.season, labels.segments, labels.width), 5).astype(float)
    assert night[:12].mean() < 0.3 * day[:12].mean()  # sky
    assert night[48:].mean() < 0.6 * day[48:].mean()  # the whole scene is darker


@pytest.mark.parametrize("time_", TIMES)
def test_snow_ground_is_white(time_):
    snow = render(plain_labels(time=time_, season="snow"), 0)[54:].reshape(-1, 3).mean(0)
    summer = render(plain_labels(time=time_, season="summer"), 0)[54:].reshape(-1, 3).mean(0)
    autumn = render(plain_labels(time=time_, season="autumn"), 0)[54:].reshape(-1, 3).mean(0)
    if time_ == "day":
        assert (snow > 200).all()
        assert summer[1] > summer[0] + 40 and summer[1] > summer[2] + 40  # green
        assert autumn[0] > autumn[1] + 40 > autumn[2] + 40  # orange / brown
    assert snow.sum() > summer.sum() + 100 and snow.sum() > autumn.sum() + 50  # brightest under any light


def test_sky_colour_holds_over_the_whole_width():
    blocks = {}
    for t in TIMES:
        image, _ = generate(11, 1024, time=t)
        top = image[:4].astype(float)
        blocks[t] = np.array([np.median(top[:, i : i + 64].reshape(-1, 3), axis=0) for i in range(0, 1024, 64)])
    for t in TIMES:
        spread = np.abs(blocks[t] - blocks[t].mean(0)).max()
        assert spread < 15, (t, spread)
        for other in TIMES:
            if other != t:
                gap = np.abs(blocks[t][:, None] - blocks[other][None]).sum(-1).min()
                assert gap > 80, (t, other, gap)


def _skyline(image: np.ndarray) -> np.ndarray:
    """First row per column that is not blue day sky."""
    pixels = image.astype(int)
    sky = pixels[..., 2] - pixels[..., 0] > 50
    return np.argmin(sky, axis=0)


def test_mountains_are_higher_than_plains():
    for seed in range(3):
        segments = (Segment(0, 256, "mountains"), Segment(256, 512, "hills"), Segment(512, 768, "plains"))
        image = render(WorldLabels("day", "summer", segments, 768), seed)
        rows = _skyline(image)
        mountains, hills, plains = (np.median(rows[a + 20 : a + 236]) for a in (0, 256, 512))
        assert mountains + 8 < hills < plains - 5, (mountains, hills, plains)
        assert 38 <= plains <= 44


@pytest.mark.parametrize("time_", TIMES)
def test_sea_is_blue(time_):
    image = render(plain_labels(time=time_, water="sea", trees=True, houses=True), 2).astype(float)
    sea = image[52:, 8:-8].reshape(-1, 3).mean(0)
    assert sea[2] > sea[0] + 30 and sea[2] > sea[1] + 15, sea
    dry = render(plain_labels(time=time_), 2).astype(float)[52:].reshape(-1, 3).mean(0)
    assert sea[2] - sea[0] > dry[2] - dry[0] + 30


def test_lake_is_blue_in_the_middle_only():
    image = render(plain_labels(width=128, water="lake"), 4).astype(float)
    middle = image[55:58, 60:68].reshape(-1, 3).mean(0)
    corner = image[60:, :4].reshape(-1, 3).mean(0)
    assert middle[2] > middle[0] + 60
    assert corner[1] > corner[2]  # grass


def test_local_labels_majority():
    segments = (Segment(0, 100, "mountains", "sea", trees=True), Segment(100, 256, "plains", "lake", houses=True))
    labels = WorldLabels("sunset", "autumn", segments, 256)
    assert labels.local_labels(0, 64) == {"terrain": "mountains", "water": "sea", "trees": True, "houses": False}
    assert labels.local_labels(80, 144) == {"terrain": "plains", "water": "lake", "trees": False, "houses": True}
    assert labels.local_labels() == {"terrain": "plains", "water": "lake", "trees": False, "houses": True}
    assert labels.attributes(0, 64)["time"] == "sunset"
    np.testing.assert_array_equal(labels.column_labels()["terrain"][98:102], [0, 0, 2, 2])


def test_json_round_trip():
    _, labels = generate(3, 700)
    data = json.loads(json.dumps(labels_to_json(labels)))
    assert data["width"] == 700 and data["height"] == HEIGHT
    assert labels_from_json(data) == labels


# -------------------------------------------------------------------------------------------- captions


def _check_caption(text: str, attrs: dict) -> None:
    words = text.split()
    assert set(words) <= set(VOCABULARY), text
    for t, word in TIME_WORD.items():
        assert (word in words) <= (attrs["time"] == t), (text, attrs)
    for s, word in SEASON_WORD.items():
        assert (word in words) <= (attrs["season"] == s), (text, attrs)
    for terrain in TERRAINS:
        assert (terrain in words) <= (attrs["terrain"] == terrain), (text, attrs)
    assert ("sea" in words) <= (attrs["water"] == "sea")
    assert ("lake" in words) <= (attrs["water"] == "lake")
    assert ("trees" in words) <= attrs["trees"]
    assert ("houses" in words) <= attrs["houses"]


def test_captions_use_the_vocabulary_and_tell_the_truth():
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(40):
        labels = sample_labels(seed, 384)
        for _ in range(10):
            text = caption(labels, rng)
            _check_caption(text, labels.attributes())
            x0 = int(rng.integers(0, 384 - 64 + 1))
            crop_text = caption_for_crop(labels, x0, rng)
            _check_caption(crop_text, labels.attributes(x0, x0 + 64))
            seen.update((text, crop_text))
    assert len(seen) > 100
    assert any(not any(w in t.split() for w in TIME_WORD.values()) for t in seen)  # time left open
    assert any(not any(w in t.split() for w in SEASON_WORD.values()) for t in seen)  # season left open


def test_caption_names():
    attrs = {"time": "sunset", "season": "snow", "terrain": "mountains", "water": "none", "trees": False}
    full = caption(attrs, 0, names=("time", "season", "terrain", "water", "objects"))
    assert full.endswith("snowy mountains at sunset")
    assert caption(attrs, 0, names=()).endswith("a landscape")
    assert caption(attrs, 0, names=("season",)).endswith("a snowy landscape")
    assert caption({"season": "autumn"}, 0, names=("season", "time")).endswith("an autumn landscape")
    lake = {"water": "lake", "trees": True, "houses": True, "time": "night"}
    assert caption(lake, 0, names=("water", "objects", "time")).endswith(
        "a landscape by a lake with trees and houses at night"
    )
    day = {caption({"time": "day"}, seed, names=("time",)).split("landscape ")[-1] for seed in range(20)}
    assert day == {"by day", "during the day"}


# --------------------------------------------------------------------------------------------- dataset


def test_crop_dataset():
    images, labels, captions = crop_dataset(0, 10)
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8
    assert len(captions) == 10
    ranges = {"time": 3, "season": 3, "terrain": 3, "water": 3, "trees": 2, "houses": 2}
    assert set(labels) == set(ranges)
    for key, n in ranges.items():
        assert labels[key].shape == (10,) and labels[key].dtype == np.int64
        assert ((labels[key] >= 0) & (labels[key] < n)).all()
    for text, i in zip(captions, range(10), strict=True):
        attrs = {k: v[labels[k][i]] for k, v in (*GLOBAL_ATTRIBUTES.items(), ("terrain", TERRAINS), ("water", WATERS))}
        attrs.update(trees=bool(labels["trees"][i]), houses=bool(labels["houses"][i]))
        _check_caption(text, attrs)
    again, labels2, captions2 = crop_dataset(0, 10)
    np.testing.assert_array_equal(images, again)
    assert all(np.array_equal(labels[k], labels2[k]) for k in labels)
    assert captions == captions2
    small, _, _ = crop_dataset(1, 3, size=32, width=64)
    assert small.shape == (3, 32, 32, 3)


def test_save_examples(tmp_path):
    from PIL import Image

    path, labels = save_examples(tmp_path / "ex.png", seeds=(0, 1), width=128, scale=1)
    assert len(labels) == 2
    assert Image.open(path).size == (128, 2 * HEIGHT + 3)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: generate(0, 63), "width"),
        (lambda: generate(0, "wide"), "width"),
        (lambda: generate(0, 128, time="dusk"), "time"),
        (lambda: generate(0, 128, season="winter"), "season"),
        (lambda: generate(0, 128, terrain="hills"), "fixed attributes"),
        (lambda: sample_labels(0, 32), "width"),
        (lambda: Segment(0, 64, "desert"), "terrain"),
        (lambda: Segment(0, 64, "hills", "river"), "water"),
        (lambda: Segment(10, 10, "hills"), "start"),
        (lambda: WorldLabels("day", "summer", (Segment(0, 50, "hills"),), 64), "segments"),
        (lambda: WorldLabels("day", "summer", (Segment(0, 30, "hills"), Segment(40, 64, "hills")), 64), "contiguous"),
        (lambda: WorldLabels("noon", "summer", (Segment(0, 64, "hills"),), 64), "time"),
        (lambda: plain_labels().local_labels(10, 10), "x0"),
        (lambda: render("labels", 0), "labels"),
        (lambda: render(plain_labels(), "seed"), "rng_or_seed"),
        (lambda: caption({"season": "winter"}, 0), "season"),
        (lambda: caption({}, 0, names=("colour",)), "names"),
        (lambda: crop_dataset(0, 2, size=65), "size"),
        (lambda: crop_dataset(0, -1), "n"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
