"""MultiDiffusion vs exact vs fast from two ``syncguide reproduce`` runs, and a paired bootstrap of the retention
ratios over (prompt, seed) from the eval caches' per-panorama values.

Usage: ``python results/fast_sync/analyze.py runs/repro_w2_exact runs/repro_w2_fast > results/fast_sync/paired.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open

SYNC = "sync2"  # file stem of SyncDiffusion w0 = 2
BOOTSTRAPS = 10_000


def per_panorama(run: Path, stem: str, key: str) -> dict[str, float]:
    """``{"p00-s0000": value}`` of one cached per-panorama metric of one method."""
    values = {}
    for path in sorted((run / "eval" / "cache" / "panoramas").glob(f"{stem}-*.safetensors")):
        with safe_open(str(path), "pt") as record:
            values[path.stem.split("-", 1)[1]] = float(record.get_tensor(key)[0])
    return values


def retention(md: np.ndarray, exact: np.ndarray, fast: np.ndarray, sign: float) -> float:
    """Fast's share of exact's improvement over MultiDiffusion (sign +1: lower is better, -1: higher)."""
    return float(sign * (md.mean() - fast.mean()) / (sign * (md.mean() - exact.mean())))


def paired(exact_run: Path, fast_run: Path, key: str, sign: float, rng: np.random.Generator) -> dict:
    md = per_panorama(exact_run, "multidiffusion", key)
    md_fast_run = per_panorama(fast_run, "multidiffusion", key)
    exact, fast = per_panorama(exact_run, SYNC, key), per_panorama(fast_run, SYNC, key)
    assert md.keys() == exact.keys() == fast.keys(), key
    assert all(abs(md[k] - md_fast_run[k]) < 1e-5 for k in md), "the two runs' MultiDiffusion panoramas differ"
    keys = sorted(md)
    m, e, f = (np.array([values[k] for k in keys]) for values in (md, exact, fast))
    draws = rng.integers(0, len(keys), (BOOTSTRAPS, len(keys)))
    ratios = np.array([retention(m[i], e[i], f[i], sign) for i in draws])
    diff = f - e
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    return {
        "n": len(keys),
        "ratio": retention(m, e, f, sign),
        "ratio_ci": [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))],
        "p_ratio_ge_0.9": float((ratios >= 0.9).mean()),
        "fast_minus_exact": float(diff.mean()),
        "fast_minus_exact_ci": [float(diff.mean() - half), float(diff.mean() + half)],
        "md_identical": True,
    }


def main(exact_run: Path, fast_run: Path) -> dict:
    rng = np.random.default_rng(0)
    out = {
        "exact": json.loads((exact_run / "eval" / "results.json").read_text())["methods"],
        "fast": json.loads((fast_run / "eval" / "results.json").read_text())["methods"],
    }
    metrics = (("intra_lpips", 1), ("judge", -1))  # lower is better, higher is better
    out["paired"] = {key: paired(exact_run, fast_run, key, sign, rng) for key, sign in metrics}
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))
