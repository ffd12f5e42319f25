"""Compute (or reuse) every image's record, split across processes; then the per-method summary.

Each process handles its share of the images (:func:`syncguide.scaleout.shard`), skipping those whose record is
cached with the right fingerprint; after all processes finish, any process can read every record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from syncguide.evaluation.inputs import Panorama, load_images
from syncguide.evaluation.records import (
    fingerprint,
    load_record,
    panorama_record,
    reference_record,
    save_record,
)
from syncguide.metrics.networks import MetricNetworks
from syncguide.scaleout import shard

Record = dict[str, torch.Tensor]


@dataclass
class MetricSettings:
    """What determines the numbers: the metrics, the crop size, the networks, and the set-metric options."""

    metrics: tuple[str, ...]
    crop: int
    networks: dict[str, str]
    k: int = 8
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    bootstrap: int = 20

    def record_settings(self) -> dict[str, Any]:
        """The part of the settings a per-image record depends on (stamped into its fingerprint)."""
        return {"metrics": sorted(self.metrics), "crop": self.crop, "networks": self.networks}


def compute_records(
    panoramas: list[Panorama],
    references: list[Path],
    networks: MetricNetworks,
    settings: MetricSettings,
    cache: Path,
    state: Any,
) -> int:
    """Write the missing records of this process's share under ``cache``; wait for every process.

    Returns how many records this process computed (0 when everything was cached)."""
    record_settings = settings.record_settings()
    jobs = [("panoramas", p.path, p.prompt) for p in panoramas] + [("references", r, None) for r in references]
    mine = shard(jobs, state.process_index, state.num_processes)
    computed = 0
    label = "eval: metrics and features" + (f" [{state.process_index}]" if state.num_processes > 1 else "")
    for kind, path, prompt in tqdm(mine, desc=label, unit="image", leave=False):
        target = record_path(cache, kind, path)
        stamp = fingerprint(path, record_settings)
        if load_record(target, stamp) is not None:
            continue
        image = load_images([path])[0]
        if kind == "panoramas":
            record = panorama_record(image, prompt, path, networks, settings.crop, settings.metrics)
        else:
            record = reference_record(image, networks)
        save_record(target, record, stamp)
        computed += 1
    state.wait_for_everyone()
    return computed


def record_path(cache: Path, kind: str, image: Path) -> Path:
    return cache / kind / f"{image.stem}.safetensors"


def read_records(cache: Path, kind: str, paths: list[Path]) -> list[Record]:
    """The cached records of ``paths`` (all must exist: call after :func:`compute_records`)."""
    from safetensors.torch import load_file

    return [load_file(str(record_path(cache, kind, p))) for p in paths]


def mean_ci(values: torch.Tensor) -> dict[str, Any]:
    """Mean with a 95% normal confidence interval (1.96 standard errors) of per-panorama values ``(n,)``."""
    values = values.double()
    mean = values.mean().item()
    half = 1.96 * values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"value": mean, "ci": [mean - half, mean + half], "n": len(values)}


Z95 = 1.959963984540054
"""The standard normal quantile of 0.975 (two-sided 95% intervals)."""


def wilson_ci(values: torch.Tensor) -> dict[str, Any]:
    """Mean with the 95% Wilson score interval of per-panorama proportions ``(n,)`` in [0, 1].

    The interval is Wilson's for a proportion ``p`` (the mean of ``values``) of ``n`` trials, ``n`` being the number
    of panoramas (one trial each; the crop pairs of one panorama are not independent, so they are not counted as
    trials)::

        (p + z^2 / 2n  ±  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n),   z = 1.96

    It lies in [0, 1] (even at p = 0 or 1, where a normal interval has zero width) and contains ``p``. For 0/1
    values it is the textbook interval; for fractions (a panorama's share of agreeing crop pairs) it is
    conservative, since a [0, 1] variable of mean p has variance at most p (1 - p). ValueError for values outside
    [0, 1] or none.
    """
    values = values.double().flatten()
    if len(values) == 0:
        raise ValueError("wilson_ci needs at least one value")
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise ValueError(f"wilson_ci needs proportions in [0, 1]; got values in [{values.min():g}, {values.max():g}]")
    n, p, z2 = len(values), values.mean().item(), Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low, high = max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding: keep p inside [0, 1]
    return {"value": p, "ci": [low, high], "n": n, "interval": "wilson"}


def bootstrap_ci(
    statistic: Callable[[torch.Tensor], float], samples: torch.Tensor, rounds: int, seed: int = 0
) -> list[float]:
    """95% percentile bootstrap interval of ``statistic`` over resamples (with replacement) of ``samples``."""
    if rounds < 2 or len(samples) < 2:
        return [float("nan"), float("nan")]
    generator = torch.Generator().manual_seed(seed)
    values = sorted(
        statistic(samples[torch.randint(len(samples), (len(samples),), generator=generator)]) for _ in range(rounds)
    )
    return [values[int(0.025 * (rounds - 1))], values[math.ceil(0.975 * (rounds - 1))]]


def summarize(records: list[Record], reference: torch.Tensor | None, settings: MetricSettings) -> dict[str, Any]:
    """One method's numbers from its panoramas' records and the reference features ``(M, D)`` (or None)."""
    from syncguide.metrics.fid import fid
    from syncguide.metrics.giqa import knn_giqa
    from syncguide.metrics.kid import kid

    out: dict[str, Any] = {}
    for key, name in (
        ("intra_lpips", "intra-lpips"),
        ("intra_style_sum", "intra-style-sum"),
        ("intra_style_mean", "intra-style-mean"),
        ("clip_score", "clip-score"),
    ):
        if records and all(key in r for r in records):
            out[name] = mean_ci(torch.cat([r[key] for r in records]))
    if records and all("judge" in r for r in records):  # a proportion: Wilson's interval, n = panoramas
        out["judge"] = wilson_ci(torch.cat([r["judge"] for r in records]))
    if reference is None:
        return out
    if all("crop_features" in r for r in records):
        per_panorama = torch.stack([knn_giqa(r["crop_features"], reference, settings.k).mean() for r in records])
        out["giqa"] = mean_ci(per_panorama)
    if all("random_features" in r for r in records):
        features = torch.cat([r["random_features"] for r in records])
        if "fid" in settings.metrics and len(features) >= 2:
            value = fid(features, reference)
            ci = bootstrap_ci(lambda f: fid(f, reference), features, settings.bootstrap)
            out["fid"] = {"value": value, "ci": ci, "n": len(features)}
        if "kid" in settings.metrics and len(features) >= 2:
            mean, std = kid(features, reference, settings.kid_subset_size, settings.kid_subsets)
            out["kid"] = {"value": float(mean), "ci": [float(mean - std), float(mean + std)], "n": len(features)}
    return out
