"""Procedural "demo world": seedable wide landscape panoramas with ground-truth labels and captions.

A panorama is ``HEIGHT`` (64) pixels high and any width >= ``MIN_WIDTH`` (64), RGB ``uint8`` of shape
``(64, W, 3)``. Its attributes are of two kinds:

* global, holding over the whole width as in a real photograph: ``time`` (sky colours, sun / moon and stars,
  lighting of the whole scene) and ``season`` (colours of vegetation, ground and trees);
* local, changing every 64-200 columns: ``terrain`` (skyline profile), ``water`` (a sea band or a lake at the
  bottom) and the objects (``trees``, ``houses``). They are stored as a list of :class:`Segment` (columns
  ``[start, end)``); :meth:`WorldLabels.local_labels` gives the majority labels of a column range.

Everything is pure numpy and deterministic from a seed (``np.random.default_rng``); Pillow is only imported by
the saving helpers. Captions come from small templates naming a random subset of the attributes, with the
words listed in ``VOCABULARY``.

Example::

    image, labels = generate(seed=3, width=512, time="night")
    text = caption_for_crop(labels, x0=128, rng=0)
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "GLOBAL_ATTRIBUTES",
    "HEIGHT",
    "LOCAL_ATTRIBUTES",
    "MIN_WIDTH",
    "SEASONS",
    "SEGMENT_MAX",
    "SEGMENT_MIN",
    "TERRAINS",
    "TIMES",
    "VOCABULARY",
    "WATERS",
    "Segment",
    "WorldLabels",
    "caption",
    "caption_for_crop",
    "crop_dataset",
    "generate",
    "labels_from_json",
    "labels_to_json",
    "render",
    "sample_labels",
    "save_examples",
    "save_image",
]

HEIGHT = 64
"""Height of every panorama, in pixels."""
MIN_WIDTH = 64
"""Smallest panorama width, in pixels."""
SEGMENT_MIN = 64
"""Smallest width of a sampled local segment (a panorama narrower than this is one segment)."""
SEGMENT_MAX = 200
"""Largest width of a sampled local segment."""

TIMES: tuple[str, ...] = ("day", "sunset", "night")
SEASONS: tuple[str, ...] = ("summer", "autumn", "snow")
TERRAINS: tuple[str, ...] = ("mountains", "hills", "plains")
WATERS: tuple[str, ...] = ("sea", "lake", "none")
GLOBAL_ATTRIBUTES: dict[str, tuple[str, ...]] = {"time": TIMES, "season": SEASONS}
"""Attributes that hold for a whole panorama, with their values (label ``i`` is ``values[i]``)."""
LOCAL_ATTRIBUTES: dict[str, tuple[str, ...]] = {"terrain": TERRAINS, "water": WATERS}
"""Attributes that change along the width (besides the boolean ``trees`` and ``houses``)."""

RngLike = np.random.Generator | int

# ----------------------------------------------------------------------------------------------- labels


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return str(value)


def _check_width(width: object) -> int:
    try:
        value = operator.index(width)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"width must be an integer >= {MIN_WIDTH}, got {width!r}") from None
    if isinstance(width, bool) or value < MIN_WIDTH:
        raise ValueError(f"width must be an integer >= {MIN_WIDTH}, got {width!r}")
    return value


def _as_rng(rng_or_seed: RngLike | None, name: str = "rng") -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, bool) or not isinstance(rng_or_seed, int | np.integer):
        raise ValueError(f"{name} must be a numpy Generator or an integer seed, got {rng_or_seed!r}")
    return np.random.default_rng(int(rng_or_seed))


@dataclass(frozen=True)
class Segment:
    """Local content of the columns ``[start, end)`` of a panorama.

    ``terrain`` is one of ``TERRAINS``, ``water`` one of ``WATERS``; ``trees`` / ``houses`` say whether such
    objects are drawn in the segment (spread over its whole width).
    """

    start: int
    end: int
    terrain: str
    water: str = "none"
    trees: bool = False
    houses: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"segment start/end must satisfy 0 <= start < end, got {self.start}, {self.end}")
        _check_choice("terrain", self.terrain, TERRAINS)
        _check_choice("water", self.water, WATERS)

    @property
    def width(self) -> int:
        """Number of columns of the segment."""
        return self.end - self.start


@dataclass(frozen=True)
class WorldLabels:
    """Ground truth of one panorama: global ``time`` / ``season`` and the local ``segments``.

    ``segments`` are contiguous, sorted, and cover the columns ``[0, width)`` exactly. Lists are stored as
    tuples. Raises ValueError for an unknown value, a width < ``MIN_WIDTH`` or segments that do not tile.
    """

    time: str
    season: str
    segments: tuple[Segment, ...]
    width: int
    _columns: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_choice("time", self.time, TIMES)
        _check_choice("season", self.season, SEASONS)
        object.__setattr__(self, "width", _check_width(self.width))
        segments = tuple(self.segments)
        if not segments or not all(isinstance(s, Segment) for s in segments):
            raise ValueError("segments must be a non-empty sequence of Segment")
        position = 0
        for seg in segments:
            if seg.start != position:
                raise ValueError(f"segments must be contiguous from column 0: expected start {position}, got {seg}")
            position = seg.end
        if position != self.width:
            raise ValueError(f"segments must end at the width ({self.width}), they end at {position}")
        object.__setattr__(self, "segments", segments)

    def column_labels(self) -> dict[str, np.ndarray]:
        """Per-column local labels: ``terrain`` / ``water`` int64 indices into ``TERRAINS`` / ``WATERS``,
        ``trees`` / ``houses`` 0/1; each an array of shape ``(width,)``."""
        if self._columns is None:
            lengths = [s.width for s in self.segments]
            columns = {
                "terrain": np.repeat([TERRAINS.index(s.terrain) for s in self.segments], lengths),
                "water": np.repeat([WATERS.index(s.water) for s in self.segments], lengths),
                "trees": np.repeat([int(s.trees) for s in self.segments], lengths),
                "houses": np.repeat([int(s.houses) for s in self.segments], lengths),
            }
            for array in columns.values():
                array.setflags(write=False)
            object.__setattr__(self, "_columns", columns)
        assert self._columns is not None
        return dict(self._columns)

    def local_labels(self, x0: int = 0, x1: int | None = None) -> dict[str, Any]:
        """Majority local labels of the columns ``[x0, x1)`` (default: the whole width).

        Returns ``{"terrain": str, "water": str, "trees": bool, "houses": bool}``; ties go to the value listed
        first (``trees`` / ``houses`` are True when more than half of the columns have them).
        """
        x1 = self.width if x1 is None else x1
        if not 0 <= x0 < x1 <= self.width:
            raise ValueError(f"column range must satisfy 0 <= x0 < x1 <= width ({self.width}), got {x0}, {x1}")
        cols = {k: v[x0:x1] for k, v in self.column_labels().items()}
        return {
            "terrain": TERRAINS[int(np.bincount(cols["terrain"], minlength=len(TERRAINS)).argmax())],
            "water": WATERS[int(np.bincount(cols["water"], minlength=len(WATERS)).argmax())],
            "trees": bool(2 * cols["trees"].sum() > x1 - x0),
            "houses": bool(2 * cols["houses"].sum() > x1 - x0),
        }

    def attributes(self, x0: int = 0, x1: int | None = None) -> dict[str, Any]:
        """Global attributes plus the majority local labels of the columns ``[x0, x1)`` (see ``local_labels``)."""
        return {"time": self.time, "season": self.season, **self.local_labels(x0, x1)}


def sample_labels(rng: RngLike, width: int, time: str | None = None, season: str | None = None) -> WorldLabels:
    """Random labels of a ``width``-column panorama; ``time`` / ``season`` are fixed when given.

    Segments are ``SEGMENT_MIN``-``SEGMENT_MAX`` columns wide (one segment when ``width`` < ``SEGMENT_MIN``
    is impossible: ``width`` >= ``MIN_WIDTH``). Neighbouring segments usually change terrain.
    """
    width = _check_width(width)
    if time is not None:
        _check_choice("time", time, TIMES)
    if season is not None:
        _check_choice("season", season, SEASONS)
    rng = _as_rng(rng)
    time = time if time is not None else TIMES[int(rng.integers(len(TIMES)))]
    season = season if season is not None else SEASONS[int(rng.integers(len(SEASONS)))]
    bounds = [0]
    while width - bounds[-1] > SEGMENT_MAX:
        step = int(rng.integers(SEGMENT_MIN, SEGMENT_MAX + 1))
        remaining = width - bounds[-1]
        if remaining - step < SEGMENT_MIN:
            step = remaining - SEGMENT_MIN
        bounds.append(bounds[-1] + step)
    bounds.append(width)
    segments = []
    previous = -1
    for start, end in itertools.pairwise(bounds):
        terrain = int(rng.integers(len(TERRAINS)))
        if terrain == previous and rng.random() < 0.75:
            terrain = (terrain + int(rng.integers(1, len(TERRAINS)))) % len(TERRAINS)
        previous = terrain
        water = WATERS[int(rng.choice(len(WATERS), p=[0.3, 0.3, 0.4]))]
        trees = bool(rng.random() < 0.6)
        houses = bool(rng.random() < 0.35)
        segments.append(Segment(start, end, TERRAINS[terrain], water, trees, houses))
    return WorldLabels(time, season, tuple(segments), width)


def labels_to_json(labels: WorldLabels) -> dict[str, Any]:
    """A JSON-serialisable dict of ``labels`` (``labels_from_json`` inverts it)."""
    return {
        "height": HEIGHT,
        "width": labels.width,
        "time": labels.time,
        "season": labels.season,
        "segments": [
            {
                "start": s.start,
                "end": s.end,
                "terrain": s.terrain,
                "water": s.water,
                "trees": s.trees,
                "houses": s.houses,
            }
            for s in labels.segments
        ],
    }


def labels_from_json(data: Mapping[str, Any]) -> WorldLabels:
    """Rebuild :class:`WorldLabels` from the dict of ``labels_to_json``."""
    segments = tuple(
        Segment(
            int(s["start"]),
            int(s["end"]),
            s["terrain"],
            s.get("water", "none"),
            bool(s.get("trees", False)),
            bool(s.get("houses", False)),
        )
        for s in data["segments"]
    )
    return WorldLabels(data["time"], data["season"], segments, int(data["width"]))


# ---------------------------------------------------------------------------------------------- colours

_F = np.float32


def _c(*rgb: float) -> np.ndarray:
    return np.array(rgb, dtype=_F)


# Sky gradient stops (top, middle, horizon) per time.
_SKY = {
    "day": (_c(55, 115, 215), _c(110, 170, 240), _c(185, 220, 250)),
    "sunset": (_c(60, 40, 115), _c(205, 90, 115), _c(255, 170, 70)),
    "night": (_c(3, 5, 20), _c(8, 14, 42), _c(22, 32, 72)),
}
_HORIZON_ROW = 46.0
# Multiplicative light on everything below the sky.
_LIGHT = {"day": _c(1.0, 1.0, 1.0), "sunset": _c(0.97, 0.7, 0.6), "night": _c(0.27, 0.31, 0.5)}
# Foreground ground: main colour and patch colour.
_GROUND = {
    "summer": (_c(80, 160, 55), _c(50, 120, 40)),
    "autumn": (_c(200, 120, 40), _c(145, 80, 35)),
    "snow": (_c(242, 246, 252), _c(205, 218, 240)),
}
_HILLS = {"summer": _c(60, 135, 60), "autumn": _c(180, 100, 45), "snow": _c(228, 235, 245)}
_ROCK = {"summer": _c(100, 125, 95), "autumn": _c(140, 100, 75), "snow": _c(236, 240, 248)}
_SNOWCAP = _c(245, 248, 252)
_SNOW_ROCK = _c(125, 125, 138)
_HAZE = {"mountains": 0.22, "hills": 0.12, "plains": 0.3}
_WATER = {"sea": _c(30, 85, 175), "lake": _c(45, 110, 190)}
_CONIFER = {"summer": _c(30, 95, 45), "autumn": _c(40, 80, 40), "snow": _c(35, 80, 55)}
_LEAVES = {
    "summer": (_c(55, 135, 45), _c(70, 150, 50), _c(45, 115, 40)),
    "autumn": (_c(215, 105, 30), _c(190, 55, 30), _c(225, 170, 45)),
}
_TRUNK = _c(90, 60, 35)
_WALLS = (_c(215, 190, 150), _c(200, 80, 60), _c(225, 215, 195), _c(170, 120, 80))
_ROOFS = (_c(150, 50, 40), _c(90, 60, 50), _c(60, 60, 75))
_WINDOW_DAY = _c(55, 65, 90)
_WINDOW_LIT = _c(255, 210, 110)

# ---------------------------------------------------------------------------------------------- render


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1], shape ``(height, width)``: bilinear interpolation of a random grid."""
    grid = rng.random((int(height / cell) + 2, int(width / cell) + 2), dtype=_F)
    ys = np.arange(height, dtype=_F) / cell
    xs = np.arange(width, dtype=_F) / cell
    y0 = ys.astype(np.int64)
    x0 = xs.astype(np.int64)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _smooth(values: np.ndarray, radius: int) -> np.ndarray:
    """Box-filter the last axis with edge padding (same length)."""
    kernel = np.ones(2 * radius + 1, dtype=_F) / (2 * radius + 1)
    padded = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(radius, radius)], mode="edge")
    out = np.empty_like(values, dtype=_F)
    for index in np.ndindex(values.shape[:-1]):
        out[index] = np.convolve(padded[index], kernel, mode="valid")
    return out


def _sky(time: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky gradient ``(HEIGHT, width, 3)`` float and its horizon colour."""
    top, mid, horizon = _SKY[time]
    t = np.clip(np.arange(HEIGHT, dtype=_F) / _HORIZON_ROW, 0, 1)[:, None]
    column = np.where(t < 0.5, top + (mid - top) * (t / 0.5), mid + (horizon - mid) * ((t - 0.5) / 0.5))
    return np.broadcast_to(column[:, None, :], (HEIGHT, width, 3)).copy(), horizon


def _disc_alpha(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    return np.clip(radius + 0.5 - distance, 0, 1)


def _draw_celestial(sky: np.ndarray, time: str, rng: np.random.Generator) -> None:
    """Sun (day / sunset) or moon and stars (night), in place on the sky."""
    width = sky.shape[1]
    cx = float(rng.uniform(0, width))
    x_lo, x_hi = max(0, int(cx) - 40), min(width, int(cx) + 41)
    ys, xs = np.mgrid[0:HEIGHT, x_lo:x_hi].astype(_F)
    patch = sky[:, x_lo:x_hi]
    if time == "day":
        cy = float(rng.uniform(8, 16))
        distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        glow = (0.45 * np.exp(-distance / 5.0))[..., None]
        patch += (_c(255, 250, 225) - patch) * glow
        alpha = _disc_alpha(xs, ys, cx, cy, 3.5)[..., None]
        patch += (_c(255, 252, 230) - patch) * alpha
    elif time == "sunset":
        cy = float(rng.uniform(27, 36))
        distance = np.sqrt(((xs - cx) / 1.8) ** 2 + (ys - cy) ** 2)
        glow = (0.55 * np.exp(-distance / 9.0))[..., None]
        patch += (_c(255, 215, 120) - patch) * glow
        alpha = _disc_alpha(xs, ys, cx, cy, 5.5)[..., None]
        patch += (_c(255, 225, 140) - patch) * alpha
    else:
        stars = rng.random((HEIGHT, width)) < 0.014
        stars[int(_HORIZON_ROW) :] = False
        brightness = rng.uniform(90, 255, size=int(stars.sum())).astype(_F)
        sky[stars] = np.maximum(sky[stars], (brightness[:, None] * _c(1.0, 1.0, 0.92)))
        cy = float(rng.uniform(7, 16))
        alpha = _disc_alpha(xs, ys, cx, cy, 3.2)
        if rng.random() < 0.6:  # crescent
            side = 1.0 if rng.random() < 0.5 else -1.0
            alpha = alpha * (1 - _disc_alpha(xs, ys, cx + side * 1.8, cy - 1.0, 2.8))
        distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        patch += (_c(60, 70, 110) - patch) * (0.35 * np.exp(-distance / 5.0))[..., None]
        patch += (_c(235, 235, 210) - patch) * alpha[..., None]


def _draw_clouds(sky: np.ndarray, time: str, rng: np.random.Generator) -> None:
    if time == "night":
        return
    width = sky.shape[1]
    colour = _c(252, 252, 255) if time == "day" else _c(255, 185, 170)
    for _ in range(int(rng.poisson(width / 160))):
        cx, cy = rng.uniform(0, width), rng.uniform(6, 17)
        a, b = rng.uniform(6, 16), rng.uniform(1.5, 3.0)
        x_lo, x_hi = max(0, int(cx - 2 * a)), min(width, int(cx + 2 * a) + 1)
        if x_lo >= x_hi:
            continue
        ys, xs = np.mgrid[0:HEIGHT, x_lo:x_hi].astype(_F)
        alpha = np.zeros(ys.shape, dtype=_F)
        for _ in range(3):  # three puffs
            ox, oy, s = rng.uniform(-a * 0.8, a * 0.8), rng.uniform(-1, 1), rng.uniform(0.6, 1.0)
            alpha = np.maximum(alpha, 1 - ((xs - cx - ox) / (a * s)) ** 2 - ((ys - cy - oy) / (b * s)) ** 2)
        alpha = (0.85 * np.sqrt(np.clip(alpha, 0, 1)))[..., None]
        sky[:, x_lo:x_hi] += (colour - sky[:, x_lo:x_hi]) * alpha


def _profiles(rng: np.random.Generator, width: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Skyline rows per terrain over the whole width (float, row of the top of the land), and for the
    mountains whether each column lies on the sunlit (left) face of its peak."""
    x = np.arange(width, dtype=_F)
    n_peaks = int(width / 22) + 4
    peaks_x = np.cumsum(rng.uniform(16, 38, size=n_peaks)).astype(_F) - 30
    peaks_y = rng.uniform(5, 15, size=n_peaks).astype(_F)
    slopes = rng.uniform(0.55, 1.25, size=n_peaks).astype(_F)
    envelope = peaks_y[:, None] + slopes[:, None] * np.abs(x[None, :] - peaks_x[:, None])
    owner = envelope.argmin(axis=0)
    jitter = np.cumsum(rng.normal(0, 0.55, size=width)).astype(_F)
    jitter -= _smooth(jitter[None], 6)[0]
    mountains = np.clip(envelope.min(axis=0) + jitter, 3, 36)
    lit = x < peaks_x[owner]
    phase = rng.uniform(0, 2 * np.pi, size=4)
    wave1, wave2 = rng.uniform(70, 130), rng.uniform(28, 50)
    hills = 31 + 4.0 * np.sin(2 * np.pi * x / wave1 + phase[0]) + 2.5 * np.sin(2 * np.pi * x / wave2 + phase[1])
    plains = 41.5 + 0.6 * np.sin(2 * np.pi * x / 90 + phase[2]) + rng.normal(0, 0.15, size=width)
    return {"mountains": mountains, "hills": hills.astype(_F), "plains": plains.astype(_F)}, lit


def _paint(layer: np.ndarray, alpha: np.ndarray, y0: int, x0: int, colours: np.ndarray, mask: np.ndarray) -> None:
    """Paint ``colours`` (h, w, 3) where ``mask`` (h, w) at ``(y0, x0)`` into ``layer`` / ``alpha``, clipped."""
    h, w = mask.shape
    height, width = alpha.shape
    ty0, tx0 = max(y0, 0), max(x0, 0)
    ty1, tx1 = min(y0 + h, height), min(x0 + w, width)
    if ty0 >= ty1 or tx0 >= tx1:
        return
    m = mask[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    c = colours[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    layer[ty0:ty1, tx0:tx1][m] = c[m]
    alpha[ty0:ty1, tx0:tx1][m] = 1.0


def _tree(layer, alpha, bx, by, scale, season, rng) -> None:
    conifer = season == "snow" or rng.random() < (0.5 if season == "summer" else 0.2)
    if conifer:
        h = max(6, round(11 * scale * rng.uniform(0.8, 1.25)))
        hw = max(2.0, h * rng.uniform(0.28, 0.36))
        ys, xs = np.mgrid[0:h, -int(hw) - 1 : int(hw) + 2].astype(_F)
        trunk = (ys >= h - 2) & (np.abs(xs) <= 0.5)
        canopy = (ys < h - 2) & (np.abs(xs) <= hw * (ys + 1) / (h - 2) + 0.3)
        colours = np.empty((*ys.shape, 3), dtype=_F)
        colours[:] = _CONIFER[season]
        colours[xs < 0] *= 1.15
        if season == "snow":
            snowy = canopy & ((ys.astype(int) % 3 != 2) | (np.abs(xs) < 0.6))
            colours[snowy] = _SNOWCAP * 0.97
        colours[trunk] = _TRUNK
        _paint(layer, alpha, int(by) - h + 1, int(bx) - int(hw) - 1, colours, trunk | canopy)
    else:
        r = max(2.0, 3.2 * scale * rng.uniform(0.85, 1.2))
        t = max(2, round(3 * scale))
        size = int(np.ceil(r)) + 1
        ys, xs = np.mgrid[0 : 2 * size + t, -size : size + 1].astype(_F)
        crown = (xs**2 + (ys - size) ** 2) <= r * r
        trunk = (ys > size) & (np.abs(xs) <= 0.5) & ~crown
        palette = _LEAVES[season]
        colours = np.empty((*ys.shape, 3), dtype=_F)
        colours[:] = palette[int(rng.integers(len(palette)))]
        colours *= (1 + 0.18 * (rng.random(ys.shape) - 0.5))[..., None].astype(_F)
        colours[(xs + (ys - size)) < -r * 0.5] *= 1.15
        colours[trunk] = _TRUNK
        _paint(layer, alpha, int(by) - ys.shape[0] + 1, int(bx) - size, colours, crown | trunk)


def _house(layer, alpha, windows, bx, by, scale, season, rng) -> None:
    w = max(5, round(9 * scale * rng.uniform(0.85, 1.2))) | 1
    wh = max(3, round(5.5 * scale))
    rh = max(2, round(4 * scale))
    half = w // 2
    ys, xs = np.mgrid[0 : wh + rh, -half - 1 : half + 2].astype(_F)
    wall = (ys >= rh) & (np.abs(xs) <= half)
    roof = (ys < rh) & (np.abs(xs) <= (half + 1) * (ys + 1) / rh)
    colours = np.empty((*ys.shape, 3), dtype=_F)
    colours[wall] = _WALLS[int(rng.integers(len(_WALLS)))]
    colours[roof] = _SNOWCAP if season == "snow" else _ROOFS[int(rng.integers(len(_ROOFS)))]
    colours[wall & (xs > half - 2)] *= 0.85
    door = wall & (ys >= wh + rh - 2) & (xs == -half + 1)
    colours[door] = _c(70, 45, 30)
    top_y, left_x = int(by) - (wh + rh) + 1, int(bx) - half - 1
    window_row = rh + max(1, wh // 3)
    for wx in (1, half - 1) if half >= 3 else (1,):
        if wx <= half:
            colours[window_row, wx + half + 1] = _WINDOW_DAY
            windows.append((top_y + window_row, left_x + wx + half + 1))
    _paint(layer, alpha, top_y, left_x, colours, wall | roof)


def render(labels: WorldLabels, rng_or_seed: RngLike) -> np.ndarray:
    """Render the panorama of ``labels``: RGB uint8 array of shape ``(HEIGHT, labels.width, 3)``, values 0-255.

    ``rng_or_seed`` (a numpy Generator, consumed, or an int seed) draws everything the labels leave open
    (skyline shapes, sun position, object placement, texture noise): one seed gives one image.
    """
    if not isinstance(labels, WorldLabels):
        raise ValueError(f"labels must be WorldLabels, got {type(labels).__name__}")
    rng = _as_rng(rng_or_seed, "rng_or_seed")
    width, time, season = labels.width, labels.time, labels.season
    y = np.arange(HEIGHT, dtype=_F)[:, None]
    x = np.arange(width, dtype=_F)

    # Sky with sun / moon / stars and clouds.
    sky, horizon = _sky(time, width)
    _draw_celestial(sky, time, rng)
    _draw_clouds(sky, time, rng)

    # Skyline: per-terrain profiles blended by smoothed per-column one-hot weights.
    profiles, lit = _profiles(rng, width)
    columns = labels.column_labels()
    weights = _smooth(np.eye(len(TERRAINS), dtype=_F)[columns["terrain"]].T, 7)  # (3, W)
    skyline = sum(weights[i] * profiles[t] for i, t in enumerate(TERRAINS))
    fg_line = 45.0 + 1.0 * np.sin(2 * np.pi * x / 70 + rng.uniform(0, 6.3)) + 0.6 * np.sin(x / 9.0)
    skyline = np.minimum(skyline, fg_line - 1.5)

    coarse = _value_noise(rng, HEIGHT, width, 8.0)
    fine = _value_noise(rng, HEIGHT, width, 2.0)

    # Terrain bodies (albedo), blended per column.
    rock = np.broadcast_to(_ROCK[season], (HEIGHT, width, 3)).copy()
    face = np.broadcast_to(np.where(lit, 1.0, 0.85).astype(_F), (HEIGHT, width))
    rock[:, lit] *= 1.12
    rock[:, ~lit] *= 0.82
    if season == "snow":
        streaks = (fine > 0.78) & (coarse > 0.5) & (y > skyline[None, :] + 2)
        rock[streaks] = _SNOW_ROCK * face[streaks][:, None]
    else:
        cap = (y < 12.5 + 2.0 * coarse) & (y < skyline[None, :] + 5)
        rock[cap] = _SNOWCAP * face[cap][:, None]
    rock *= (0.92 + 0.16 * fine)[..., None]
    hills = _HILLS[season] * (0.88 + 0.2 * coarse + 0.06 * fine)[..., None]
    hills *= np.clip(1.1 - 0.015 * (y - skyline[None, :]), 0.85, 1.1)[..., None]
    ground_main, ground_patch = _GROUND[season]
    mix = np.clip((coarse - 0.35) * 3, 0, 1)[..., None]
    ground = ground_main + (ground_patch - ground_main) * mix
    ground *= (0.94 + 0.12 * fine)[..., None]
    plains = ground * 0.95
    body = weights[0][None, :, None] * rock + weights[1][None, :, None] * hills + weights[2][None, :, None] * plains
    haze = sum(weights[i] * _HAZE[t] for i, t in enumerate(TERRAINS))

    land_alpha = np.clip(y + 1 - skyline[None, :], 0, 1)
    ground_alpha = np.clip(y + 1 - fg_line[None, :], 0, 1)
    land = body + (ground - body) * ground_alpha[..., None]

    # Water: sea band over its segments (shore curving down where a neighbour has none), lake ellipses.
    water_alpha = np.zeros((HEIGHT, width), dtype=_F)
    water_colour = np.zeros((HEIGHT, width, 3), dtype=_F)
    water_top = np.full(width, float(HEIGHT), dtype=_F)
    segments = labels.segments
    for i, seg in enumerate(segments):
        cols = slice(seg.start, seg.end)
        if seg.water == "sea":
            xs = x[cols]
            top = fg_line[cols] + 2.0
            ramp = 18.0
            if i == 0 or segments[i - 1].water != "sea":
                top = top + (HEIGHT - top) * np.clip(1 - (xs - seg.start) / ramp, 0, 1) ** 2
            if i == len(segments) - 1 or segments[i + 1].water != "sea":
                top = top + (HEIGHT - top) * np.clip(1 - (seg.end - 1 - xs) / ramp, 0, 1) ** 2
            if i == 0:
                top = np.where(xs < ramp, fg_line[cols] + 2.0, top)  # the sea may run off the left edge
            if i == len(segments) - 1:
                top = np.where(xs > seg.end - 1 - ramp, fg_line[cols] + 2.0, top)
            water_alpha[:, cols] = np.maximum(water_alpha[:, cols], np.clip(y + 1 - top[None, :], 0, 1))
            water_colour[:, cols] = _WATER["sea"]
            water_top[cols] = np.minimum(water_top[cols], top)
        elif seg.water == "lake":
            a = float(np.clip(seg.width * rng.uniform(0.25, 0.36), 12, 40))
            cx = (seg.start + seg.end) / 2 + rng.uniform(-0.1, 0.1) * seg.width
            cy, b = float(rng.uniform(54.5, 57)), float(rng.uniform(4.5, 6.0))
            lo, hi = max(0, int(cx - a) - 1), min(width, int(cx + a) + 2)
            xs = x[lo:hi]
            inside = 1 - ((xs[None, :] - cx) / a) ** 2 - ((y - cy) / b) ** 2
            alpha = np.clip(inside * a * 0.5, 0, 1)
            water_alpha[:, lo:hi] = np.maximum(water_alpha[:, lo:hi], alpha)
            water_colour[:, lo:hi] = np.where(alpha[..., None] > 0, _WATER["lake"], water_colour[:, lo:hi])
            half = b * np.sqrt(np.clip(1 - ((xs - cx) / a) ** 2, 0, 1))
            water_top[lo:hi] = np.where(half > 0.5, np.minimum(water_top[lo:hi], cy - half), water_top[lo:hi])
    ripples = (fine > 0.7) & (rng.random((HEIGHT, width)) < 0.5)
    water_colour[ripples] *= 1.3
    water_colour *= (0.9 + 0.1 * (y - 44) / 20)[..., None]
    land += (water_colour - land) * water_alpha[..., None]

    # Objects: trees and houses spread over their segments, far (high base row) ones drawn first.
    obj = np.zeros((HEIGHT, width, 3), dtype=_F)
    obj_alpha = np.zeros((HEIGHT, width), dtype=_F)
    windows: list[tuple[int, int]] = []
    objects = []
    for seg in segments:
        kinds = []
        if seg.trees:
            n = max(3, seg.width // 11)
            kinds += [("tree", seg.start + (k + rng.random()) * seg.width / n) for k in range(n)]
        if seg.houses:
            n = max(2, seg.width // 40)
            kinds += [("house", seg.start + (k + rng.uniform(0.2, 0.8)) * seg.width / n) for k in range(n)]
        for kind, bx in kinds:
            column = min(width - 1, int(bx))
            by = float(rng.uniform(fg_line[column] + 3, HEIGHT - 1.5))
            lo, hi = max(0, column - 5), min(width, column + 6)
            top = float(water_top[lo:hi].min())
            if by >= top - 0.5:
                by = max(top - 1.0, fg_line[column] + 0.5)
            objects.append((by, bx, kind))
    objects.sort(key=lambda item: (item[0], item[1]))
    for by, bx, kind in objects:
        scale = 0.65 + 0.65 * float(np.clip((by - 45) / 17, 0, 1))
        if kind == "tree":
            _tree(obj, obj_alpha, bx, by, scale, season, rng)
        else:
            _house(obj, obj_alpha, windows, bx, by, scale, season, rng)

    # Compose: light the land and objects, haze the distant terrain, put it all in front of the sky.
    light = _LIGHT[time]
    far = haze[None, :] * (1 - ground_alpha)
    land_lit = land * light
    land_lit += (horizon - land_lit) * far[..., None]
    image = sky + (land_lit - sky) * land_alpha[..., None]
    image += (obj * light - image) * obj_alpha[..., None]
    if time in ("sunset", "night"):
        for wy, wx in windows:
            if 0 <= wy < HEIGHT and 0 <= wx < width and obj_alpha[wy, wx] > 0:
                image[wy, wx] = _WINDOW_LIT
    image += rng.normal(0, 2.5, size=image.shape).astype(_F)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def generate(seed: int, width: int = 512, **fixed: str) -> tuple[np.ndarray, WorldLabels]:
    """Sample labels and render them: ``(image uint8 (HEIGHT, width, 3), labels)``, fully determined by ``seed``.

    ``fixed`` may set the global attributes ``time`` and/or ``season``; other keys raise ValueError.
    """
    unknown = set(fixed) - set(GLOBAL_ATTRIBUTES)
    if unknown:
        raise ValueError(f"fixed attributes must be among {tuple(GLOBAL_ATTRIBUTES)}, got {sorted(unknown)}")
    rng = _as_rng(seed, "seed")
    labels = sample_labels(rng, width, **fixed)
    return render(labels, rng), labels


# --------------------------------------------------------------------------------------------- captions

_SEASON_WORDS = {"snow": "snowy", "autumn": "autumn", "summer": "summer"}
_TIME_PHRASES = {"day": ("by day", "during the day"), "sunset": ("at sunset",), "night": ("at night",)}
_WATER_PHRASES = {"sea": "by the sea", "lake": "by a lake"}
_PREFIXES = ("a photo of ", "a picture of ", "a view of ", "")
_CAPTION_PARTS = ("time", "season", "terrain", "water", "objects")


def _vocabulary() -> list[str]:
    phrases = [
        *_SEASON_WORDS.values(),
        *(p for ps in _TIME_PHRASES.values() for p in ps),
        *_WATER_PHRASES.values(),
        *_PREFIXES,
        *TERRAINS,
        "a an landscape with trees and houses",
    ]
    return sorted({word for phrase in phrases for word in phrase.split()})


VOCABULARY: list[str] = _vocabulary()
"""Sorted lower-case words of every caption (for a BPE tokenizer)."""


def caption(
    labels: WorldLabels | Mapping[str, Any],
    rng: RngLike,
    names: Iterable[str] | None = None,
    p: float = 0.5,
) -> str:
    """A caption naming a random subset of the attributes, e.g. ``"a photo of snowy mountains at sunset"``.

    Args:
        labels: a :class:`WorldLabels` (its globals and the majority local labels of the whole width) or a
            mapping with any of the keys ``time``, ``season``, ``terrain``, ``water`` (str) and ``trees``,
            ``houses`` (bool), as returned by ``WorldLabels.attributes``. Missing keys are never named.
        rng: numpy Generator (consumed) or int seed.
        names: if given, name exactly these of ``("time", "season", "terrain", "water", "objects")`` (those
            with something to say: water "none" and no objects are never named); otherwise each is named with
            probability ``p``.
        p: probability of naming each attribute when ``names`` is None, in [0, 1].

    Every word is in ``VOCABULARY``; a named attribute is always the true one. Nothing named gives
    ``"<prefix>a landscape"``.
    """
    attrs = labels.attributes() if isinstance(labels, WorldLabels) else dict(labels)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    for key, values in (*GLOBAL_ATTRIBUTES.items(), *LOCAL_ATTRIBUTES.items()):
        if key in attrs:
            _check_choice(key, attrs[key], values)
    rng = _as_rng(rng)
    draws = rng.random(len(_CAPTION_PARTS))
    if names is None:
        chosen = {part for part, draw in zip(_CAPTION_PARTS, draws, strict=True) if draw < p}
    else:
        chosen = set(names)
        unknown = chosen - set(_CAPTION_PARTS)
        if unknown:
            raise ValueError(f"names must be among {_CAPTION_PARTS}, got {sorted(unknown)}")
    prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
    time_choice = int(rng.integers(2))

    adjective = _SEASON_WORDS[attrs["season"]] if "season" in chosen and "season" in attrs else None
    if "terrain" in chosen and "terrain" in attrs:
        subject = attrs["terrain"] if adjective is None else f"{adjective} {attrs['terrain']}"
    elif adjective is None:
        subject = "a landscape"
    else:
        subject = f"{'an' if adjective[0] in 'aeiou' else 'a'} {adjective} landscape"
    parts = [prefix + subject]
    if "water" in chosen and attrs.get("water", "none") != "none":
        parts.append(_WATER_PHRASES[attrs["water"]])
    if "objects" in chosen:
        things = [k for k in ("trees", "houses") if attrs.get(k)]
        if things:
            parts.append("with " + " and ".join(things))
    if "time" in chosen and "time" in attrs:
        options = _TIME_PHRASES[attrs["time"]]
        parts.append(options[time_choice % len(options)])
    return " ".join(parts)


def caption_for_crop(
    labels: WorldLabels, x0: int, rng: RngLike, size: int = 64, names: Iterable[str] | None = None, p: float = 0.5
) -> str:
    """Caption of the crop of columns ``[x0, x0 + size)``: global attributes plus the crop's majority local labels.

    See :func:`caption` for ``rng``, ``names`` and ``p``.
    """
    return caption(labels.attributes(x0, x0 + size), rng, names=names, p=p)


# ---------------------------------------------------------------------------------------------- dataset


def crop_dataset(
    seed: int, n: int, size: int = 64, width: int = 256, crops_per_panorama: int = 4
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """``n`` random ``size`` x ``size`` crops of random panoramas, for training small models.

    Panoramas of ``width`` columns are generated with seeds drawn from ``seed``; each gives
    ``crops_per_panorama`` crops at random columns (and, when ``size`` < ``HEIGHT``, random rows).

    Returns:
        images: uint8 ``(n, size, size, 3)``.
        labels: int64 arrays of shape ``(n,)``: ``time`` (index into ``TIMES``), ``season`` (``SEASONS``),
            ``terrain`` (``TERRAINS``) and ``water`` (``WATERS``): the crop's majority columns; ``trees`` and
            ``houses`` 0/1.
        captions: ``n`` captions from :func:`caption_for_crop`.
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 8 <= size <= HEIGHT:
        raise ValueError(f"size must be in [8, {HEIGHT}], got {size}")
    width = _check_width(width)
    if width < size:
        raise ValueError(f"width must be >= size ({size}), got {width}")
    if crops_per_panorama < 1:
        raise ValueError(f"crops_per_panorama must be >= 1, got {crops_per_panorama}")
    rng = _as_rng(seed, "seed")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    out = {key: np.empty(n, dtype=np.int64) for key in ("time", "season", "terrain", "water", "trees", "houses")}
    captions: list[str] = []
    index = 0
    while index < n:
        panorama, labels = generate(int(rng.integers(2**63)), width)
        for _ in range(min(crops_per_panorama, n - index)):
            x0 = int(rng.integers(0, width - size + 1))
            y0 = int(rng.integers(0, HEIGHT - size + 1))
            images[index] = panorama[y0 : y0 + size, x0 : x0 + size]
            attrs = labels.attributes(x0, x0 + size)
            out["time"][index] = TIMES.index(attrs["time"])
            out["season"][index] = SEASONS.index(attrs["season"])
            out["terrain"][index] = TERRAINS.index(attrs["terrain"])
            out["water"][index] = WATERS.index(attrs["water"])
            out["trees"][index] = int(attrs["trees"])
            out["houses"][index] = int(attrs["houses"])
            captions.append(caption(attrs, rng))
            index += 1
    return images, out, captions


# ----------------------------------------------------------------------------------------------- saving


def save_image(path: str | Path, image: np.ndarray, scale: int = 1) -> Path:
    """Save an RGB uint8 ``(H, W, 3)`` image as PNG, enlarged ``scale`` times (nearest); returns the path."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def save_examples(
    path: str | Path, seeds: Iterable[int] = range(6), width: int = 512, scale: int = 2, **fixed: str
) -> tuple[Path, list[WorldLabels]]:
    """Stack the panoramas of ``seeds`` (3-pixel white gaps) into one PNG; returns the path and their labels."""
    rows, all_labels = [], []
    for seed in seeds:
        image, labels = generate(seed, width, **fixed)
        rows += [image, np.full((3, width, 3), 255, dtype=np.uint8)]
        all_labels.append(labels)
    if not rows:
        raise ValueError("seeds must not be empty")
    return save_image(path, np.concatenate(rows[:-1]), scale=scale), all_labels
