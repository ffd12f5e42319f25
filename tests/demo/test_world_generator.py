import numpy as np
import pytest

from syncguide.demo.world import (
    SEASONS,
    TIMES,
    VOCABULARY,
    caption,
    caption_for_crop,
    crop_dataset,
    generate,
    sample_labels,
)


@pytest.mark.parametrize("width", [64, 200, 1024])
def test_deterministic_shapes(width: int) -> None:
    a, la = generate(3, width)
    b, lb = generate(3, width)
    assert a.shape == (64, width, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, generate(4, width)[0])


def test_segments_tile_the_width_and_vary() -> None:
    _, labels = generate(11, 1024)
    assert labels.segments[0].start == 0 and labels.segments[-1].end == 1024
    assert all(a.end == b.start for a, b in zip(labels.segments, labels.segments[1:], strict=False))
    assert len(labels.segments) >= 1024 // 200
    terrains = {s.terrain for seed in range(5) for s in generate(seed, 1024)[1].segments}
    assert terrains == {"mountains", "hills", "plains"}


def _sky(image: np.ndarray) -> np.ndarray:
    return image[:8].astype(float)  # the top rows are sky in every panorama


def test_time_of_day_sets_the_sky_over_the_whole_width() -> None:
    brightness = {t: np.mean([_sky(generate(s, 512, time=t)[0]).mean() for s in range(4)]) for t in TIMES}
    assert brightness["night"] < 0.5 * brightness["day"]
    for t in TIMES:
        sky = _sky(generate(7, 512, time=t)[0])
        blocks = sky.reshape(8, 8, 64, 3).mean(axis=(0, 2))  # mean colour of 8 column blocks
        spread = np.abs(blocks - blocks.mean(0)).max()
        others = [_sky(generate(7, 512, time=u)[0]).mean(axis=(0, 1)) for u in TIMES if u != t]
        gap = min(np.abs(sky.mean(axis=(0, 1)) - o).max() for o in others)
        assert spread < gap / 2, (t, spread, gap)  # one time of day for the whole panorama


def test_snow_whitens_the_ground() -> None:
    def ground(season: str) -> float:
        images = [generate(s, 512, time="day", season=season)[0] for s in range(4)]
        return float(np.mean([img[48:].min(axis=2).mean() for img in images]))  # whiteness of the bottom rows

    assert ground("snow") > ground("summer") + 40 and ground("snow") > ground("autumn") + 40


def test_captions_use_the_vocabulary_and_tell_the_truth() -> None:
    rng = np.random.default_rng(0)
    words = set(VOCABULARY)
    for seed in range(60):
        _, labels = generate(seed, 256)
        text = caption(labels, rng)
        assert set(text.split()) <= words, text
        for t, phrase in (("sunset", "sunset"), ("night", "night"), ("day", "day")):
            if phrase in text:
                assert labels.time == t, text
        for s, word in (("snow", "snowy"), ("autumn", "autumn"), ("summer", "summer")):
            if word in text.split():
                assert labels.season == s, text
    full = caption_for_crop(labels, 0, rng, names=("time", "season", "terrain", "water", "objects"))
    assert labels.segments[0].terrain in full or labels.local_labels(0, 64)["terrain"] in full


def test_captions_can_leave_globals_open() -> None:
    rng = np.random.default_rng(1)
    texts = [caption(generate(s, 128)[1], rng) for s in range(40)]
    open_time = [t for t in texts if not any(w in t for w in ("night", "sunset", "day"))]
    assert 0 < len(open_time) < len(texts)


def test_crop_dataset_labels_match_the_generator() -> None:
    images, labels, captions = crop_dataset(seed=2, n=10)
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8 and len(captions) == 10
    assert labels["time"].max() < len(TIMES) and labels["season"].max() < len(SEASONS)
    assert np.array_equal(crop_dataset(seed=2, n=10)[0], images)


def test_fixed_globals_and_bad_input() -> None:
    labels = sample_labels(np.random.default_rng(0), 300, time="night", season="snow")
    assert (labels.time, labels.season) == ("night", "snow")
    with pytest.raises(ValueError, match="width"):
        generate(0, 10)
    with pytest.raises(ValueError, match="time"):
        generate(0, 128, time="noon")
