"""Per-image evaluation records, computed once and cached on disk so that an interrupted ``eval`` resumes.

A panorama's record holds its per-panorama metrics (Intra-LPIPS, Intra-Style-L, CLIP-S of one random crop, the
demo judge's agreement) and the features FID, KID and GIQA need (every window crop's, and the random crop's); a
reference image's record holds its features. Records are safetensors files named after the image, stamped with
a fingerprint of the image bytes and the settings; a record whose fingerprint differs is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from syncguide.atomic import write_atomic
from syncguide.metrics.crops import random_crops, window_crops
from syncguide.metrics.networks import MetricNetworks

PANORAMA_METRICS = ("intra-lpips", "intra-style", "giqa", "fid", "kid", "clip-score", "judge")
"""Metric names of ``syncguide eval --metrics``; ``judge`` is the demo judge's crop agreement (demo only)."""
NEEDS_REFERENCE = ("giqa", "fid", "kid")


def fingerprint(path: Path, settings: dict[str, Any]) -> str:
    """SHA-256 of the file's bytes and the JSON of ``settings``."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def crop_generator(path: Path) -> torch.Generator:
    """The generator of a panorama's random crop: seeded by its file name, so any process draws the same crop."""
    seed = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:8], "little") % 2**63
    return torch.Generator().manual_seed(seed)


def panorama_record(
    panorama: torch.Tensor,
    prompt: str,
    path: Path,
    networks: MetricNetworks,
    crop: int,
    metrics: tuple[str, ...],
) -> dict[str, torch.Tensor]:
    """The record of one panorama ``(3, H, W)`` in [0, 1] for the requested ``metrics``.

    Keys: ``intra_lpips`` (1,), ``intra_style_sum`` / ``intra_style_mean`` (1,), ``crop_features`` (n, D),
    ``random_features`` (1, D), ``clip_score`` (1,), ``judge`` (1,) (the crop agreement of ``networks.judge``).
    """
    from syncguide.metrics.clip_score import clip_score
    from syncguide.metrics.pairwise import intra_lpips, intra_style_loss

    x = panorama[None]
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if "intra-lpips" in metrics:
            record["intra_lpips"] = intra_lpips(x, networks.distance, crop).reshape(1)
        if "intra-style" in metrics:
            total = intra_style_loss(x, networks.style, crop, reduction="sum").reshape(1)
            n = x.shape[-1] // crop
            record["intra_style_sum"] = total
            record["intra_style_mean"] = total / (n * (n - 1) // 2)  # the "mean" reduction, without a second pass
        if "giqa" in metrics:
            record["crop_features"] = networks.features(window_crops(x, crop)[0])
        random = random_crops(x, crop, crop_generator(path))
        if {"fid", "kid"} & set(metrics):
            record["random_features"] = networks.features(random)
        if "clip-score" in metrics:
            record["clip_score"] = clip_score(random, [prompt], networks.clip).reshape(1)
        if "judge" in metrics and networks.judge is not None:
            record["judge"] = networks.judge.agreement(x).reshape(1)
    return {k: v.detach().float().cpu().contiguous() for k, v in record.items()}


def reference_record(image: torch.Tensor, networks: MetricNetworks) -> dict[str, torch.Tensor]:
    """``{"features": (1, D)}`` of one reference image ``(3, h, w)`` in [0, 1]."""
    with torch.no_grad():
        return {"features": networks.features(image[None]).detach().float().cpu().contiguous()}


def load_record(path: Path, stamp: str) -> dict[str, torch.Tensor] | None:
    """The cached record at ``path`` if it exists, is readable and has fingerprint ``stamp``, else None (a corrupt
    cache file is recomputed, not an error)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            if (handle.metadata() or {}).get("fingerprint") != stamp:
                return None
        return load_file(str(path))
    except Exception:  # a truncated or corrupt cache file (safetensors' own error types): recompute it
        return None


def save_record(path: Path, record: dict[str, torch.Tensor], stamp: str) -> None:
    """Write ``record`` atomically (replacing a stale one) with fingerprint ``stamp``."""
    write_atomic(path, save(record, metadata={"fingerprint": stamp}), overwrite=True)
