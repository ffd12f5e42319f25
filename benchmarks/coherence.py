"""SyncDiffusion's claim in the demo world: panoramas are more coherent than MultiDiffusion's.

    python benchmarks/coherence.py --out results/coherence     # writes coherence.md and coherence.png

For prompts that leave the global attributes (time of day, season) open, the same seeds and latents are
denoised with MultiDiffusion and SyncDiffusion into 64 x 384 panoramas; the judge (an attribute classifier that
nothing guides with) labels each of the 6 non-overlapping 64 x 64 crops, and coherence is the fraction of crop
pairs given the same value. The bundled demo model, CLIP-feature sync loss and judge are used unless given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from syncguide import SyncDiffusionPipeline
from syncguide.demo.bundled import bundled
from syncguide.demo.judge import load_judge
from syncguide.demo.judging import coherence
from syncguide.guidance.perceptual import clip_feature_distance

PROMPTS = ("a photo of mountains", "a landscape by a lake", "a photo of hills with trees")


def panoramas(pipe, prompt: str, seeds: list[int], width: int, sync_weight: float, args) -> torch.Tensor:
    """Panoramas ``(len(seeds), 3, 64, width)`` in [0, 1], one per seed, with the seed's latents."""
    scale, channels = pipe.backbone.vae_scale, pipe.unet.config.in_channels
    latents = torch.cat(
        [
            torch.randn(1, channels, 64 // scale, width // scale, generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]
    )
    return pipe(
        [prompt] * len(seeds),
        height=64,
        width=width,
        latents=latents,
        num_inference_steps=args.steps,
        guidance_scale=args.cfg,
        stride=args.stride,
        view_batch_size=4,
        output_type="pt",
        sync_weight=sync_weight,
        sync_decay=0.95,
        sync_steps=args.sync_steps,
        sync_batch_size=4,
        perceptual_loss=args.loss,
    ).images


def strip(md: torch.Tensor, sync: torch.Tensor) -> Image.Image:
    """MultiDiffusion panoramas above SyncDiffusion ones for the same seeds, 2x enlarged, white gaps."""
    rows = []
    for a, b in zip(md, sync, strict=True):
        rows += [a, b, torch.ones(3, 6, a.shape[-1])]
    grid = torch.cat(rows[:-1], dim=1).permute(1, 2, 0).numpy()
    image = Image.fromarray((grid * 255).round().astype(np.uint8))
    return image.resize((image.width * 2, image.height * 2), Image.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="default: bundled demo sd")
    parser.add_argument("--clip", type=Path, default=None, help="sync loss CLIP (default: bundled)")
    parser.add_argument("--judge", type=Path, default=None, help="default: bundled judge")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--sync-weight", type=float, default=20.0)
    parser.add_argument("--sync-steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("results/coherence"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SyncDiffusionPipeline.from_pretrained(args.model or bundled("sd"))
    pipe.set_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    judge = load_judge(args.judge or bundled("judge"))
    args.loss = clip_feature_distance(args.clip or bundled("clip"))
    seeds = list(range(args.seeds))
    results, pictures = {}, {}
    start = time.perf_counter()
    for prompt in PROMPTS:
        md = panoramas(pipe, prompt, seeds, args.width, 0.0, args)
        sync = panoramas(pipe, prompt, seeds, args.width, args.sync_weight, args)
        results[prompt] = {"MultiDiffusion": coherence(judge, md), "SyncDiffusion": coherence(judge, sync)}
        pictures[prompt] = (md[:4], sync[:4])
        print(prompt, {m: {k: round(v.mean().item(), 3) for k, v in r.items()} for m, r in results[prompt].items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    first = PROMPTS[0]
    strip(*pictures[first]).save(args.out.with_suffix(".png"))
    report(args, results, time.perf_counter() - start)


def report(args, results: dict, seconds: float) -> None:
    """Write the markdown table and a JSON of every per-panorama number."""
    methods = ("MultiDiffusion", "SyncDiffusion")
    lines = ["| prompt | attribute | MultiDiffusion | SyncDiffusion |", "|---|---|---|---|"]
    totals = {m: {} for m in methods}
    for prompt, by_method in results.items():
        for attribute in ("time", "season", "both"):
            cells = []
            for m in methods:
                values = by_method[m][attribute]
                totals[m].setdefault(attribute, []).append(values)
                cells.append(f"{values.mean():.3f} ± {values.std() / len(values) ** 0.5:.3f}")
            lines.append(f"| {prompt} | {attribute} | {' | '.join(cells)} |")
    for attribute in ("time", "season", "both"):
        cells = []
        for m in methods:
            values = torch.cat(totals[m][attribute])
            cells.append(f"**{values.mean():.3f}** ± {values.std() / len(values) ** 0.5:.3f}")
        lines.append(f"| all | {attribute} | {' | '.join(cells)} |")
    command = (
        f"python benchmarks/coherence.py --seeds {args.seeds} --width {args.width} --steps {args.steps} "
        f"--stride {args.stride} --sync-weight {args.sync_weight} --sync-steps {args.sync_steps} "
        f"--out {args.out} --threads {args.threads}"
    )
    text = [
        f"Command: `{command}` ({seconds / 60:.1f} min, {args.threads} torch thread(s) on a 2-core machine).",
        "",
        f"Coherence = fraction of the 15 pairs of 64-px crops that the judge gives the same value (mean ± "
        f"standard error over {args.seeds} seeds per prompt).",
        "",
        *lines,
        "",
        f"Picture: `{args.out.with_suffix('.png')}` (prompt '{PROMPTS[0]}', seeds 0-3: MultiDiffusion above "
        "SyncDiffusion).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    raw = {p: {m: {k: v.tolist() for k, v in r.items()} for m, r in by.items()} for p, by in results.items()}
    args.out.with_suffix(".json").write_text(json.dumps(raw))
    print("\n".join(text))


if __name__ == "__main__":
    main()
