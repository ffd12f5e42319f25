"""Fast vs exact SyncDiffusion vs MultiDiffusion, time per call, robust to a shared machine (CPU).

    python benchmarks/bench_fast_min.py tiny-sd demo    # markdown table on stdout

One process per model; the methods run interleaved, ``ROUNDS`` rounds, and each method's time is its *minimum*
over the rounds (other jobs on the machine only ever add time). 10 steps; "first 20%" syncs the first 2 (the
paper's 10 of 50). Models and decoders as in ``bench_fast.py`` (the demo model with its bundled tiny decoder).
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from bench_fast import METHODS, PLANS, load

ROUNDS = 3
STEPS = 10


def table(model: str) -> list[str]:
    from syncguide.guidance.perceptual import lpips_vgg

    torch.set_num_threads(2)
    _, wide, fraction = PLANS[model]
    with tempfile.TemporaryDirectory() as tmp:
        pipe, decoder = load(model, tmp)
        pipe.set_progress_bar_config(disable=True)
        backbone = pipe.backbone
        window = backbone.window
        size = {"height": window * backbone.vae_scale, "width": round(wide * window) * backbone.vae_scale}
        loss = lpips_vgg(pretrained_trunk=False)
        best = {name: float("inf") for name in METHODS}
        for _ in range(ROUNDS):
            for name, method in METHODS.items():
                kwargs = {"stride": max(1, window // fraction), "output_type": "latent"}
                kwargs["sync_weight"] = method["sync_weight"]
                if method.get("sync_mode") == "fast":
                    kwargs.update(sync_mode="fast", sync_decoder=decoder)
                if "steps_fraction" in method:
                    kwargs["sync_steps"] = max(1, round(method["steps_fraction"] * STEPS))
                start = time.perf_counter()
                pipe("a photo of the sea", num_inference_steps=STEPS, perceptual_loss=loss, **size, **kwargs)
                best[name] = min(best[name], time.perf_counter() - start)
    md = best["MultiDiffusion"]
    rows = ["| method | min s | time / MD |", "|---|---|---|"]
    rows += [f"| {name} | {s:.2f} | {s / md:.2f} |" for name, s in best.items()]
    return [f"{model}: {wide} windows wide, stride window/{fraction}, {STEPS} steps, min of {ROUNDS}:", "", *rows]


if __name__ == "__main__":
    for model in sys.argv[1:] or ["tiny-sd", "demo"]:
        print(f"### fast-min-{model}\n\n" + "\n".join(table(model)) + "\n", flush=True)
