"""Layout-guided generation in the demo world: does a region keep its own global attribute value on a canvas
of another?

    python benchmarks/layout.py --out results/layout                          # season: snow on summer
    python benchmarks/layout.py --contrast time --out results/layout/night    # time of day: night on day

A 64 x 384 canvas has the background prompt "a view of a summer landscape during the day" and one box region
(columns 128-256 px, full height) asking "a snowy landscape during the day" (``--contrast season``) or "a summer
landscape at night" (``--contrast time``). Each seed is denoised with region MultiDiffusion (sync off) and with
SyncDiffusion on the background (sync on), from the same initial noise and bootstrapping colours. The judge (an
attribute classifier that nothing guides with) labels the six non-overlapping 64 x 64 crops: crops 2 and 3 lie
fully inside the region, crops 0, 1, 4 and 5 fully outside. A side succeeds when more than half of its crops are
judged its prompt's value (inside: both crops; outside: at least 3 of 4); a sample succeeds when both sides do.
The strict rate asks every crop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from syncguide import Layout, Region, SyncDiffusionPipeline
from syncguide.demo.bundled import bundled
from syncguide.demo.judge import load_judge
from syncguide.demo.judging import CROP, crop_predictions
from syncguide.demo.world import SEASONS, TIMES
from syncguide.guidance.perceptual import clip_feature_distance

BACKGROUND = "a view of a summer landscape during the day"
CONTRASTS = {
    # name: (attribute, the background's value, the region's prompt, the region's value)
    "season": ("season", "summer", "a snowy landscape during the day", "snow"),
    "time": ("time", "day", "a summer landscape at night", "night"),
}
VALUES = {"season": SEASONS, "time": TIMES}


def layout_images(pipe, layout: Layout, seeds: list[int], args, sync_weight: float) -> torch.Tensor:
    """Images ``(len(seeds), 3, 64, width)`` in [0, 1]; seed s fixes the initial noise and bootstrap colours."""
    images = []
    for seed in seeds:
        images.append(
            pipe.layout(
                layout,
                height=64,
                width=args.width,
                num_inference_steps=args.steps,
                guidance_scale=args.cfg,
                stride=args.stride,
                view_batch_size=8,
                generator=torch.Generator().manual_seed(seed),
                output_type="pt",
                bootstrap_fraction=args.bootstrap,
                sync_weight=sync_weight,
                sync_decay=0.95,
                sync_steps=args.sync_steps,
                sync_batch_size=8,
                sync_regions=args.sync_regions,
                perceptual_loss=args.loss,
            ).images
        )
    return torch.cat(images)


def judge_sides(
    judge, images: torch.Tensor, inside: list[int], outside: list[int], contrast: str
) -> dict[str, torch.Tensor]:
    """Per sample: the share of inside crops judged the region's value, of outside crops judged the background's,
    and success flags."""
    attribute, background, _, region = CONTRASTS[contrast]
    labels = crop_predictions(judge, images)[attribute]
    asked = (labels[:, inside] == VALUES[attribute].index(region)).float().mean(1)
    kept = (labels[:, outside] == VALUES[attribute].index(background)).float().mean(1)
    return {
        "inside": asked,
        "outside": kept,
        "success": ((asked > 0.5) & (kept > 0.5)).float(),
        "strict": ((asked == 1) & (kept == 1)).float(),
        "labels": labels.float(),
    }


def picture(rows: list[torch.Tensor], box: tuple[int, int], scale: int = 2) -> Image.Image:
    """Sync-off above sync-on per seed, white gaps between seeds, the region outlined in red."""
    strips = []
    for off, on in zip(*rows, strict=True):
        strips += [off, on, torch.ones(3, 6, off.shape[-1])]
    grid = torch.cat(strips[:-1], dim=1).permute(1, 2, 0).numpy()
    image = Image.fromarray((grid * 255).round().astype(np.uint8))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    h = 64 * scale
    for k in range(len(strips) // 3 + 1):
        for j in range(2):
            top = k * (2 * h + 6 * scale) + j * h
            draw.rectangle((box[0] * scale, top, box[1] * scale - 1, top + h - 1), outline=(220, 30, 30))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--region", default="128,256", help="region columns in px, START,END (full height)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--stride", type=int, default=8, help="latent px (demo default: half a window)")
    parser.add_argument("--bootstrap", type=float, default=0.2)
    parser.add_argument("--sync-weight", type=float, default=2.0, help="demo weight for the demo-clip loss")
    parser.add_argument("--sync-steps", type=int, default=10)
    parser.add_argument("--sync-regions", action="store_true", help="also sync the region to its own anchor")
    parser.add_argument("--contrast", choices=tuple(CONTRASTS), default="season", help="which attribute differs")
    parser.add_argument("--out", type=Path, default=Path("results/layout"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = SyncDiffusionPipeline.from_pretrained(bundled("sd"))
    pipe.set_progress_bar_config(disable=True)
    judge = load_judge(bundled("judge"))
    args.loss = clip_feature_distance(bundled("clip"))
    start, end = (int(v) for v in args.region.split(","))
    region = CONTRASTS[args.contrast][2]
    layout = Layout(BACKGROUND, (Region(region, box=(start / args.width, 0.0, end / args.width, 1.0)),))
    n_crops = args.width // CROP
    inside = [c for c in range(n_crops) if c * CROP >= start and (c + 1) * CROP <= end]
    outside = [c for c in range(n_crops) if (c + 1) * CROP <= start or c * CROP >= end]
    seeds = list(range(args.seeds))
    clock = time.perf_counter()
    results, rows = {}, []
    for name, weight in (("sync off", 0.0), ("sync on", args.sync_weight)):
        images = layout_images(pipe, layout, seeds, args, weight)
        results[name] = judge_sides(judge, images, inside, outside, args.contrast)
        rows.append(images[:6])
        print(name, {k: round(v.mean().item(), 3) for k, v in results[name].items() if k != "labels"}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    picture(rows, (start, end)).save(args.out / "layout.png")
    report(args, results, inside, outside, time.perf_counter() - clock)


def report(args, results: dict, inside: list[int], outside: list[int], seconds: float) -> None:
    """Write README.md (command, time, table) and layout.json (every crop's label)."""
    attribute, background, region, value = CONTRASTS[args.contrast]
    lines = [f"| | success (majority per side) | strict (every crop) | inside {value} | outside {background} |"]
    lines.append("|---|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[k].mean():.3f}" for k in ("success", "strict", "inside", "outside")]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    command = "python benchmarks/layout.py " + " ".join(sys.argv[1:])
    text = [
        "# Layout-guided generation in the demo world",
        "",
        f"Command: `{command.strip()}` ({seconds / 60:.1f} min on 1 CPU thread, both settings).",
        "",
        f"Canvas 64 x {args.width} px, background '{BACKGROUND}', box region columns {args.region} px (full height)"
        f" asking '{region}'; {args.steps} DDIM steps, CFG {args.cfg}, stride {args.stride} latent px, "
        f"bootstrapping {args.bootstrap:.0%} of the steps; sync on = weight {args.sync_weight} (demo-clip loss), "
        f"decay 0.95, first {args.sync_steps} steps, on the background's windows"
        f"{' and the region towards its own anchor' if args.sync_regions else ''}. {args.seeds} seeds (0..."
        f"{args.seeds - 1}), the same noise and bootstrap colours for both settings.",
        "",
        f"The judge labels the {attribute} of the 64-px crops fully inside the region (crops {inside}) and fully"
        f" outside (crops {outside}). A sample succeeds when more than half of the inside crops are judged {value} AND"
        f" more than half of the outside crops {background} (majority per side); 'strict' asks every crop.",
        "",
        *lines,
        "",
        "Picture: `layout.png` (seeds 0-5; each seed sync off above sync on; the region outlined in red).",
    ]
    (args.out / "README.md").write_text("\n".join(text) + "\n")
    raw = {name: {k: v.tolist() for k, v in r.items()} for name, r in results.items()}
    (args.out / "layout.json").write_text(json.dumps({"inside": inside, "outside": outside, "results": raw}))
    print("\n".join(text))


if __name__ == "__main__":
    main()
