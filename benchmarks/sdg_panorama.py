"""SDG composed with SyncDiffusion in the demo world: "a panorama of PROMPT in the style of REF".

    python benchmarks/sdg_panorama.py --out results/sdg_panorama     # README.md, results.json, panoramas.png

For the same seeds and initial latents, the bundled demo Stable Diffusion makes 64 x 384 SyncDiffusion panoramas
without and with style guidance (plain demo CLIP on every window's decoded x0 prediction) towards a reference
whose time of day and season differ from what the prompt leaves open. Measured by the judge (which never guides):
the Gram distance of the panoramas' six 64-px crops to the reference over the judge's conv stages, the share of
crops given the reference's time and season, and the coherence of each panorama (crop-pair agreement).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from syncguide import SyncDiffusionPipeline
from syncguide.demo.bundled import bundled
from syncguide.demo.judge import load_judge
from syncguide.demo.judging import coherence, crop_predictions, crops
from syncguide.demo.world import SEASONS, TIMES, generate
from syncguide.guidance.perceptual import clip_feature_distance
from syncguide.guidance.semantic import StyleGuidance
from syncguide.models.guidance_clip import load_clip

sys.path.insert(0, str(Path(__file__).parent))
from sdg_demo import gram_distance, save_grid


def reference_image(time_: str, season: str, seed: int) -> torch.Tensor:
    """A 64 x 64 world crop ``(1, 3, 64, 64)`` in [-1, 1] with the given time and season."""
    image, _ = generate(seed, 128, time=time_, season=season)
    return torch.from_numpy(image[:, 32:96]).permute(2, 0, 1)[None].float() / 127.5 - 1


def panoramas(pipe, prompt: str, seeds: list[int], guidance, args) -> torch.Tensor:
    shape = (1, pipe.unet.config.in_channels, 16, 96)
    latents = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return pipe(
        [prompt] * len(seeds), height=64, width=384, latents=latents, num_inference_steps=args.steps,
        stride=8, view_batch_size=8, sync_batch_size=8, sync_weight=args.sync_weight, sync_steps=10,
        perceptual_loss=args.loss, semantic_guidance=guidance, output_type="pt",
    ).images  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="a photo of mountains")
    parser.add_argument("--time", default="night", choices=TIMES)
    parser.add_argument("--season", default="snow", choices=SEASONS)
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--sync-weight", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/sdg_panorama"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = SyncDiffusionPipeline.from_pretrained(bundled("sd"))
    pipe.set_progress_bar_config(disable=True)
    args.loss = clip_feature_distance(bundled("clip"))
    judge, clip = load_judge(bundled("judge")), load_clip("demo")
    reference = reference_image(args.time, args.season, 5)
    seeds = list(range(args.seeds))
    rows, images = [], []
    start = time.perf_counter()
    for weight in args.weights:
        guidance = StyleGuidance(weight=weight, encoder=clip, reference=reference) if weight > 0 else None
        pano = panoramas(pipe, args.prompt, seeds, guidance, args)
        tiles = crops(pano).flatten(0, 1)
        ref01 = ((reference + 1) / 2).expand(len(tiles), -1, -1, -1)
        pred = crop_predictions(judge, pano)
        agree = coherence(judge, pano)
        rows.append({
            "weight": weight,
            "gram_distance": gram_distance(judge, tiles, ref01).mean().item(),
            "time_share": (pred["time"] == TIMES.index(args.time)).float().mean().item(),
            "season_share": (pred["season"] == SEASONS.index(args.season)).float().mean().item(),
            "coherence_both": agree["both"].mean().item(),
        })  # fmt: skip
        images.append(pano)
        print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/sdg_panorama.py " + " ".join(sys.argv[1:])
    result = {"command": command, "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    grid = [torch.cat([(reference + 1) / 2, torch.ones(1, 3, 64, 320)], dim=-1)]
    grid += [p[k : k + 1] for k in range(len(seeds)) for p in images]
    save_grid(grid, args.out / "panoramas.png", scale=2)
    lines = [
        f"Command: `{command}` ({result['seconds']} s on CPU). Prompt '{args.prompt}', reference: a "
        f"{args.season} crop at {args.time} (first row of the picture); SyncDiffusion (demo-clip loss, w0 "
        f"{args.sync_weight:g}, 10 synced steps) with style guidance at each weight; {args.seeds} seeds.",
        "",
        "| style weight | Gram distance to reference | crops judged the reference's time | ... its season | "
        "coherence (both) |",
        "|---|---|---|---|---|",
        *[
            f"| {r['weight']:g} | {r['gram_distance']:.2e} | {r['time_share']:.2f} | {r['season_share']:.2f} | "
            f"{r['coherence_both']:.2f} |"
            for r in rows
        ],
        "",
        "Picture `panoramas.png`: the reference, then per seed one panorama per weight (in the table's order).",
    ]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
