"""The evaluation report: ``results.json``, ``results.md`` (a Table-1-style table) and matplotlib plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from syncguide.atomic import write_atomic

COLUMNS = {
    # name: (header, lower is better, which network produced it)
    "intra-lpips": ("Intra-LPIPS ↓", True, "lpips"),
    "intra-style-sum": ("Intra-Style-L (sum over pairs) ↓", True, "style"),
    "intra-style-mean": ("Intra-Style-L (mean over pairs) ↓", True, "style"),
    "giqa": ("Mean-GIQA ↑", False, "features"),
    "fid": ("FID ↓", True, "features"),
    "kid": ("KID ↓", True, "features"),
    "clip-score": ("Mean-CLIP-S ↑", False, "clip"),
    "judge": ("Judge agreement ↑", False, "judge"),
}
INTERVALS = {
    "fid": "95% bootstrap interval over panoramas",
    "kid": "± one std over KID subsets",
    "judge": "95% Wilson score interval [low, high] of the mean crop-pair agreement, n = the number of panoramas "
    "(within [0, 1]; conservative, as each panorama's agreement is a share in [0, 1])",
}
BRACKETED = ("judge",)
"""Metrics whose (asymmetric) interval the table shows as ``value [low, high]`` rather than ``value ± half``."""


def write_report(out: Path, results: dict[str, Any]) -> list[Path]:
    """Write (or rewrite) ``results.json``, ``results.md``, ``metrics.png`` and ``tradeoff.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "results.json": json.dumps(results, indent=2).encode(),
        out / "results.md": markdown(results).encode(),
    }
    for path, data in files.items():
        write_atomic(path, data, overwrite=True)
    return [*files, plot_metrics(results, out / "metrics.png"), plot_tradeoff(results, out / "tradeoff.png")]


def ordered_methods(results: dict[str, Any]) -> list[str]:
    """Method labels by sync weight (MultiDiffusion first)."""
    return sorted(results["methods"], key=lambda m: results["methods"][m]["sync_weight"])


def _cell(entry: dict[str, Any] | None, bracketed: bool = False) -> str:
    if entry is None:
        return "–"
    value, (low, high) = entry["value"], entry["ci"]
    if math.isnan(low):
        return _number(value)
    if bracketed:
        return f"{_number(value)} [{_number(low)}, {_number(high)}]"
    return f"{_number(value)} ± {_number((high - low) / 2)}"


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def markdown(results: dict[str, Any]) -> str:
    """The table (methods as rows, metrics as columns) with the networks and definitions below it."""
    methods = ordered_methods(results)
    names = [c for c in COLUMNS if any(c in results["methods"][m]["metrics"] for m in methods)]
    lines = [
        "| method | panoramas | " + " | ".join(COLUMNS[c][0] for c in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for m in methods:
        entry = results["methods"][m]
        cells = [_cell(entry["metrics"].get(c), c in BRACKETED) for c in names]
        lines.append(f"| {m} | {entry['n']} | " + " | ".join(cells) + " |")
    noted = "; ".join(f"{COLUMNS[c][0].split(' ')[0]} {INTERVALS[c]}" for c in names if c in INTERVALS)
    notes = [
        "",
        "Values are mean ± half a 95% confidence interval over panoramas"
        + (f" unless noted: {noted}." if noted else "."),
        f"Crops: {results['crop']} px, non-overlapping; FID/KID/CLIP-S use one random crop per panorama; "
        f"{results['n_references']} reference images.",
        "",
        "Networks:",
        *[f"- {COLUMNS[c][0]}: {results['networks'].get(COLUMNS[c][2], 'n/a')}" for c in names],
    ]
    return "\n".join(lines + notes) + "\n"


def plot_metrics(results: dict[str, Any], path: Path) -> Path:
    """One panel per metric: the value of every method with its interval as an error bar."""
    plt = _pyplot()
    methods = ordered_methods(results)
    names = [c for c in COLUMNS if any(c in results["methods"][m]["metrics"] for m in methods)]
    fig, axes = _panels(plt, len(names), 3.4)
    for ax, name in zip(axes, names, strict=False):
        entries = [results["methods"][m]["metrics"].get(name) for m in methods]
        values = [e["value"] if e else math.nan for e in entries]
        errors = [[_lower(e) for e in entries], [_upper(e) for e in entries]]
        ax.bar(range(len(methods)), values, yerr=errors, capsize=4, color="#6a9fd4")
        ax.set_xticks(range(len(methods)), [m.replace("SyncDiffusion ", "Sync\n") for m in methods], fontsize=7)
        ax.set_title(COLUMNS[name][0], fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_tradeoff(results: dict[str, Any], path: Path) -> Path:
    """Every metric against the sync weight w0 (0 = MultiDiffusion): coherence gained against fidelity and
    diversity lost, one panel per metric, with the intervals as error bars."""
    plt = _pyplot()
    methods = ordered_methods(results)
    weights = [results["methods"][m]["sync_weight"] for m in methods]
    names = [c for c in COLUMNS if all(c in results["methods"][m]["metrics"] for m in methods)]
    fig, axes = _panels(plt, len(names), 3.2)
    for ax, name in zip(axes, names, strict=False):
        entries = [results["methods"][m]["metrics"][name] for m in methods]
        errors = [[_lower(e) for e in entries], [_upper(e) for e in entries]]
        ax.errorbar(weights, [e["value"] for e in entries], yerr=errors, marker="o", capsize=3)
        ax.set_xlabel("sync weight w0", fontsize=8)
        ax.set_title(COLUMNS[name][0], fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _panels(plt: Any, n: int, height: float) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels, at most 4 per row (unused panels hidden); returns it and the panels in order."""
    columns = min(4, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _lower(entry: dict[str, Any] | None) -> float:
    return 0.0 if entry is None or math.isnan(entry["ci"][0]) else max(0.0, entry["value"] - entry["ci"][0])


def _upper(entry: dict[str, Any] | None) -> float:
    return 0.0 if entry is None or math.isnan(entry["ci"][1]) else max(0.0, entry["ci"][1] - entry["value"])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    _pyplot().close(fig)
    write_atomic(path, buffer.getvalue(), overwrite=True)
    return path
