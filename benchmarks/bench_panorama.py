"""Panorama benchmarks on tiny random models (CPU): wall time and peak memory, as ratios within one run.

    python benchmarks/bench_panorama.py all            # every table below, markdown on stdout
    python benchmarks/bench_panorama.py vs-diffusers   # our MultiDiffusion vs StableDiffusionPanoramaPipeline
    python benchmarks/bench_panorama.py sync-cost      # SyncDiffusion vs MultiDiffusion
    python benchmarks/bench_panorama.py width          # time and memory against panorama width
    python benchmarks/bench_panorama.py chunk          # memory against windows per gradient pass

Each measurement runs in a fresh process: load the model, one warm-up step, then the timed call; peak memory
is the process's peak resident set size during the timed call (the kernel's high-water mark, reset just before
it) minus its size just before it. The sync loss is LPIPS-VGG
with a random trunk (the same computation as the real LPIPS-VGG; no download).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

STEPS = 50


def run_one(config: dict) -> dict:
    """Time one generation in this process; returns seconds and peak extra memory in MB."""
    from syncguide import SyncDiffusionPipeline
    from syncguide.guidance.perceptual import lpips_vgg
    from syncguide.models.tiny import tiny_components

    torch.set_num_threads(config.get("threads", 2))
    with tempfile.TemporaryDirectory() as tmp:
        parts = tiny_components(tmp, sample_size=config["window"])
    if config["impl"] == "diffusers":
        from diffusers import StableDiffusionPanoramaPipeline

        pipe = StableDiffusionPanoramaPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        kwargs = {}
    else:
        pipe = SyncDiffusionPipeline(**parts)
        kwargs = {
            "stride": config["stride"],
            "sync_weight": config.get("sync_weight", 0.0),
            "sync_steps": config.get("sync_steps"),
            "sync_batch_size": config.get("sync_batch_size", 1),
            "sync_checkpointing": config.get("checkpointing", False),
        }
        if kwargs["sync_weight"] > 0:
            kwargs["perceptual_loss"] = lpips_vgg(pretrained_trunk=False)
    pipe.set_progress_bar_config(disable=True)
    common = {"view_batch_size": config.get("view_batch_size", 1), "output_type": "np"}
    pipe("warm up", height=config["height"], width=config["height"], num_inference_steps=1, **common, **kwargs)
    base = reset_peak_rss()
    start = time.perf_counter()
    pipe(
        "a photo of mountains at sunset",
        height=config["height"],
        width=config["width"],
        num_inference_steps=config.get("steps", STEPS),
        generator=torch.Generator().manual_seed(0),
        **common,
        **kwargs,
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": max(0.0, (peak_rss() - base) / 2**20)}


def reset_peak_rss() -> int:
    """Reset the kernel's high-water mark of resident memory (Linux); returns the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    """Peak resident memory since the last reset, in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def fresh_process(script: str, config: dict) -> dict:
    """``script --one CONFIG`` in a fresh Python process; the JSON object its last line prints."""
    out = subprocess.run(
        [sys.executable, script, "--one", json.dumps(config)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(config: dict) -> dict:
    """Run :func:`run_one` in a fresh process."""
    return {**config, **fresh_process(__file__, config)}


def windows_of(config: dict) -> int:
    from syncguide.tiling import make_windows

    return len(make_windows(config["height"] // 8, config["width"] // 8, config["window"], config["stride"]))


def vs_diffusers() -> list[str]:
    """Our MultiDiffusion vs diffusers' panorama pipeline: 64-latent windows, stride 8, same size and steps."""
    base = {"window": 64, "height": 512, "width": 1024, "stride": 8, "steps": 10}
    rows = ["| view batch | diffusers s | ours s | ours / diffusers |", "|---|---|---|---|"]
    for batch in (1, 4):
        theirs = measure({**base, "impl": "diffusers", "view_batch_size": batch})
        ours = measure({**base, "impl": "ours", "view_batch_size": batch})
        rows.append(
            f"| {batch} | {theirs['seconds']:.2f} | {ours['seconds']:.2f} | {ours['seconds'] / theirs['seconds']:.2f} |"
        )
    return [f"512 x 1024 px, {windows_of(base)} windows, {base['steps']} DDIM steps, CFG 7.5:", "", *rows]


def sync_cost() -> list[str]:
    """SyncDiffusion (every step, first 10 of 50) against MultiDiffusion, time and peak memory."""
    base = {"impl": "ours", "window": 8, "height": 64, "width": 512, "stride": 4, "steps": STEPS}
    configs = {
        "MultiDiffusion": base,
        "SyncDiffusion, every step": {**base, "sync_weight": 20.0},
        "SyncDiffusion, sync_steps 10": {**base, "sync_weight": 20.0, "sync_steps": 10},
        "SyncDiffusion, every step, checkpointing": {**base, "sync_weight": 20.0, "checkpointing": True},
    }
    results = {name: measure(config) for name, config in configs.items()}
    md = results["MultiDiffusion"]
    rows = ["| method | s | time / MD | peak MB | peak / MD |", "|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['seconds']:.2f} | {r['seconds'] / md['seconds']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['peak_mb'] / max(md['peak_mb'], 1e-9):.2f} |"
        )
    return [f"64 x 512 px, window 8 latents, stride 4, {windows_of(base)} windows, {STEPS} steps:", "", *rows]


def width() -> list[str]:
    """SyncDiffusion time and memory against width: linear in windows, memory bounded by the chunk size."""
    rows = ["| width px | windows | s | s / window | peak MB |", "|---|---|---|---|---|"]
    for pixels in (256, 512, 1024):
        config = {
            "impl": "ours",
            "window": 8,
            "height": 64,
            "width": pixels,
            "stride": 4,
            "steps": 10,
            "sync_weight": 20.0,
            "sync_batch_size": 2,
        }
        r = measure(config)
        n = windows_of(config)
        rows.append(f"| {pixels} | {n} | {r['seconds']:.2f} | {r['seconds'] / n:.3f} | {r['peak_mb']:.0f} |")
    return ["SyncDiffusion at every step, 10 steps, 2 windows per gradient pass:", "", *rows]


def chunk() -> list[str]:
    """SyncDiffusion peak memory against the number of windows per gradient pass (64 x 512 px, 15 windows)."""
    rows = ["| windows per gradient pass | s | peak MB |", "|---|---|---|"]
    for size in (1, 2, 4, 8):
        config = {"impl": "ours", "window": 8, "height": 64, "width": 512, "stride": 4, "steps": 10}
        r = measure({**config, "sync_weight": 20.0, "sync_batch_size": size})
        rows.append(f"| {size} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")
    return ["SyncDiffusion at every step, 10 steps:", "", *rows]


TABLES = {"vs-diffusers": vs_diffusers, "sync-cost": sync_cost, "width": width, "chunk": chunk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?", choices=[*TABLES, "all"], default="all")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    names = list(TABLES) if args.table == "all" else [args.table]
    for name in names:
        print(f"### {name}\n")
        print("\n".join(TABLES[name]()) + "\n", flush=True)


if __name__ == "__main__":
    main()
