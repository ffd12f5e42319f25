"""Where fast SyncDiffusion's time goes: the real pipeline with one part at a time swapped for a free one (CPU).

    python benchmarks/profile_fast.py demo tiny-sd tiny-sdxl tiny-flux   # min of 3 rounds, interleaved
    python benchmarks/profile_fast.py sd2-base                            # 1 round (minutes per row)

Rows (every step synced unless said): MultiDiffusion; exact; fast; fast with the perceptual loss replaced by a
mean squared difference (its gap to fast is the perceptual loss's forward + backward); fast with that loss *and*
a free decoder (nearest upsampling of a 1x1 projection: its gap is the tiny decoder's forward + backward, and what
is left over MultiDiffusion is the held x0, the anchor and bookkeeping); fast with ``sync_loss_size`` at half the
window; and exact / fast syncing the first 20% of the steps (the paper's 10 of 50). Each row's time is its minimum
over the rounds (other jobs only ever add time); for sd2-base each row also runs in a fresh process for its peak
resident memory. The loss is the demo world's demo-clip on the demo model, else LPIPS-VGG with a
random trunk; decoders as in ``bench_fast.py``. Results are
appended to ``profile_fast.jsonl`` (a rerun skips rows already there: delete it to start over).
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from bench_fast import PLANS, load
from bench_panorama import fresh_process, peak_rss, reset_peak_rss

CACHE = Path(__file__).with_name("profile_fast.jsonl")
STEPS = {"sd2-base": 5}  # others: 10
CANVAS = {"tiny-flux": (3, 2)}  # windows wide, stride window/N where not bench_fast.PLANS's (FLUX at 21 windows: slow)
ROUNDS = {"sd2-base": 1}  # others: 3
ROWS = {
    "MultiDiffusion": {"sync_weight": 0.0},
    "exact, every step": {"sync_weight": 20.0},
    "fast, every step": {"mode": "fast"},
    "fast, squared-difference loss": {"mode": "fast", "loss": "free"},
    "fast, free loss and free decoder": {"mode": "fast", "loss": "free", "decoder": "free"},
    "fast, loss at half size": {"mode": "fast", "half": True},
    "exact, first 20%": {"sync_weight": 20.0, "fraction": 0.2},
    "fast, first 20%": {"mode": "fast", "fraction": 0.2},
    "fast at half size, first 20%": {"mode": "fast", "half": True, "fraction": 0.2},
}


class FreeDecoder(torch.nn.Module):
    """A decoder costing next to nothing: a fixed 1x1 projection to RGB, upsampled (nearest) by ``scale``."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.project = torch.nn.Conv2d(channels, 3, 1)
        self.scale = scale
        self.config = SimpleNamespace(scaling_factor=1.0, latent_channels=channels, shift_factor=None)

    @property
    def dtype(self) -> torch.dtype:
        return self.project.weight.dtype

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        up = torch.nn.functional.interpolate(self.project(latents), scale_factor=self.scale, mode="nearest")
        return SimpleNamespace(sample=torch.tanh(up))


def squared_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image ``(B,)``: a perceptual loss of no cost."""
    return ((a - b) ** 2).flatten(1).mean(1)


def arguments(row: dict, pipe, decoder, steps: int) -> dict:
    """The pipeline keyword arguments of ``row``."""
    backbone = pipe.backbone
    wide, fraction = plan(row["model"])
    window = backbone.window
    kwargs = {
        "height": window * backbone.vae_scale,
        "width": round(wide * window) * backbone.vae_scale,
        "stride": max(1, window // fraction),
        "output_type": "latent",
        "num_inference_steps": steps,
        "sync_weight": row.get("sync_weight", 20.0),
    }
    if kwargs["sync_weight"] > 0:
        kwargs["perceptual_loss"] = squared_difference if row.get("loss") == "free" else loss_of(row["model"])
    if row.get("mode") == "fast":
        if row.get("decoder") == "free":
            decoder = FreeDecoder(backbone.latent_channels, backbone.vae_scale)
        kwargs.update(sync_mode="fast", sync_decoder=decoder)
    if row.get("half"):
        kwargs["sync_loss_size"] = window * backbone.vae_scale // 2
    if "fraction" in row:
        kwargs["sync_steps"] = max(1, round(row["fraction"] * steps))
    return kwargs


def plan(model: str) -> tuple[float, int]:
    """``(canvas width in windows, stride as window / N)`` of ``model``."""
    return CANVAS.get(model, PLANS[model][1:])


@functools.cache
def loss_of(model: str) -> torch.nn.Module:
    """The sync loss ``model`` runs with, built once: the demo world's own (demo-clip, as ``syncguide`` uses it
    and results/fast_sync.md measured it), else LPIPS-VGG with a random trunk (the real one's cost)."""
    from syncguide import registry
    from syncguide.guidance.perceptual import lpips_vgg

    if model == "demo":
        return registry.lookup("perceptual", "demo-clip")(torch.device("cpu"))
    return lpips_vgg(pretrained_trunk=False)


def timed(pipe, kwargs: dict) -> float:
    start = time.perf_counter()
    pipe("a photo of the sea", generator=torch.Generator().manual_seed(0), **kwargs)
    return time.perf_counter() - start


def run_one(config: dict) -> dict:
    """One row in this process (sd2-base): seconds and peak extra resident MB."""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        pipe, decoder = load(config["model"], tmp)
        pipe.set_progress_bar_config(disable=True)
        kwargs = arguments(config, pipe, decoder, config.get("steps", STEPS.get(config["model"], 10)))
        if config["model"] != "sd2-base":  # warm up: the first call's one-off allocations are not its peak
            timed(pipe, {**kwargs, "num_inference_steps": 1})
        base = reset_peak_rss()
        seconds = timed(pipe, kwargs)
    return {"seconds": seconds, "peak_mb": max(0.0, (peak_rss() - base) / 2**20)}


def rows_of(model: str) -> list[str]:
    """The rows measured on ``model``: not the half-size ones where half a window is under 32 px (too small for
    LPIPS-VGG's five poolings: the tiny SDXL and FLUX models' 16 px windows)."""
    half = {"tiny-sdxl": 8, "tiny-flux": 8}.get(model, 32)
    return [name for name, row in ROWS.items() if half >= 32 or not row.get("half")]


def done() -> dict:
    if not CACHE.exists():
        return {}
    rows = [json.loads(line) for line in CACHE.read_text().splitlines() if line.strip()]
    return {(r["model"], r["row"]): r for r in rows}


def record(result: dict) -> None:
    with CACHE.open("a") as f:
        f.write(json.dumps(result) + "\n")


def profile(model: str) -> None:
    """Measure every row of ``model`` not yet in the cache."""
    cached = done()
    todo = [name for name in rows_of(model) if (model, name) not in cached]
    if model != "sd2-base":
        memory(model, cached)
    if not todo:
        return
    if model == "sd2-base":  # one fresh process per row: its peak memory too
        for name in todo:
            result = fresh_process(__file__, {"model": model, **ROWS[name]})
            record({"model": model, "row": name, **result})
            print(model, name, result, flush=True)
        return
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        pipe, decoder = load(model, tmp)
        pipe.set_progress_bar_config(disable=True)
        steps = STEPS.get(model, 10)
        calls = {name: arguments({"model": model, **ROWS[name]}, pipe, decoder, steps) for name in todo}
        timed(pipe, {**calls[todo[0]], "num_inference_steps": 1})  # warm up
        best = {name: float("inf") for name in todo}
        for _ in range(ROUNDS.get(model, 3)):
            for name in todo:
                best[name] = min(best[name], timed(pipe, calls[name]))
    for name in todo:
        record({"model": model, "row": name, "seconds": best[name]})
        print(model, name, round(best[name], 2), flush=True)


def memory(model: str, cached: dict) -> None:
    """Peak resident memory of each row of a small model: a fresh process each, 3 steps after a warm-up step
    (a step's peak does not grow with the number of steps); cached as ``(model, "memory: ROW")``."""
    for name in rows_of(model):
        if (model, f"memory: {name}") not in cached:
            result = fresh_process(__file__, {"model": model, "steps": 3, **ROWS[name]})
            record({"model": model, "row": f"memory: {name}", "peak_mb": result["peak_mb"]})


def table(model: str) -> list[str]:
    """The markdown table of ``model``'s cached rows: time, ratio to MD, and each part's share of fast's extra."""
    rows = done()
    get = {name: dict(rows[(model, name)]) for name in ROWS if (model, name) in rows}
    for name in get:  # small models: peak memory from its own fresh-process run
        get[name].setdefault("peak_mb", rows.get((model, f"memory: {name}"), {}).get("peak_mb"))
    md = get["MultiDiffusion"]["seconds"]
    memory = all(r["peak_mb"] is not None for r in get.values())
    head = "| row | s | time / MD |" + (" peak MB | peak / MD |" if memory else "")
    lines = [head, "|---|---|---|" + ("---|---|" if memory else "")]
    for name, r in get.items():
        line = f"| {name} | {r['seconds']:.2f} | {r['seconds'] / md:.2f} |"
        if memory:
            base = max(get["MultiDiffusion"]["peak_mb"], 1.0)
            line += f" {r['peak_mb']:.0f} | {r['peak_mb'] / base:.2f} |"
        lines.append(line)
    fast = get["fast, every step"]["seconds"] - md
    free_loss = get["fast, squared-difference loss"]["seconds"]
    free_both = get["fast, free loss and free decoder"]["seconds"]
    parts = {
        "perceptual loss fwd+bwd": get["fast, every step"]["seconds"] - free_loss,
        "tiny decoder fwd+bwd": free_loss - free_both,
        "held x0, anchor, bookkeeping": free_both - md,
    }
    lines += ["", f"fast's extra over MD, every step: {fast:.2f} s =", ""]
    lines += [f"- {part}: {s:.2f} s ({100 * s / fast:.0f}%)" for part, s in parts.items()]
    steps, rounds = STEPS.get(model, 10), ROUNDS.get(model, 3)
    wide, fraction = plan(model)
    title = f"{model}: {wide} windows wide, stride window/{fraction}, {steps} steps, min of {rounds}:"
    return [title, "", *lines]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
        return
    for model in sys.argv[1:] or ["demo", "tiny-sd", "tiny-sdxl", "tiny-flux"]:
        profile(model)
        print(f"### profile-fast-{model}\n\n" + "\n".join(table(model)) + "\n", flush=True)


if __name__ == "__main__":
    main()
