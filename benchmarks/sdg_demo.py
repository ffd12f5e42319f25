"""Semantic Diffusion Guidance measured in the demo world (the bundled unconditional DDPM, 32 x 32).

    python benchmarks/sdg_demo.py --clip demo-noise-aware --out results/sdg    # results.json and pictures

Parts (``--parts``, default all):
- ``text``: for each value of time and season, samples guided by its prompt; the judge's rate of that value,
  against the unguided base rate, with the plain CLIP and the noise-aware CLIP at the same weight;
- ``sweep``: text-guidance weights: success rate, diversity (mean pairwise demo-CLIP feature distance within a
  prompt, LPIPS-style), Fréchet distance of the judge's features to real crops ("FID on demo features");
- ``content``: one sample per reference among 20 references; top-1 retrieval of its own reference by cosine of
  the judge's features (not the guidance CLIP's);
- ``style``: Gram distance (judge feature maps) of guided and unguided samples to their style reference.
The judge never guides. Every sample of a comparison uses the same initial noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from syncguide.demo.bundled import bundled
from syncguide.demo.judge import load_judge
from syncguide.demo.networks import JudgeFeatures, judge_maps
from syncguide.demo.train.clip import SEASON_PROMPTS, TIME_PROMPTS
from syncguide.demo.train.common import make_crops
from syncguide.guidance.perceptual import clip_feature_distance
from syncguide.guidance.semantic import ContentGuidance, Guidance, StyleGuidance, TextGuidance, gram
from syncguide.metrics.frechet import frechet_distance
from syncguide.metrics.pairwise import style_loss
from syncguide.metrics.retrieval import topk_retrieval
from syncguide.models.guidance_clip import load_clip
from syncguide.schedulers import q_sample
from syncguide.sdg_pipeline import SemanticGuidancePipeline

VALUES = {**{("time", k): v for k, v in TIME_PROMPTS.items()}, **{("season", k): v for k, v in SEASON_PROMPTS.items()}}
ATTRIBUTE_VALUES = {"time": tuple(TIME_PROMPTS), "season": tuple(SEASON_PROMPTS)}


def sample(pipe, n: int, seed: int, guidance: Guidance | None, steps: int, batch: int = 32) -> torch.Tensor:
    """``n`` samples ``(n, 3, 32, 32)`` in [0, 1]; sample k always starts from the same noise (seed, k)."""
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    noise = torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(seed * 10_000 + k)) for k in range(n)]
    )
    out = []
    for start in range(0, n, batch):
        generator = torch.Generator().manual_seed(seed + start)
        chunk = noise[start : start + batch]
        out.append(
            pipe(
                len(chunk),
                generator=generator,
                num_inference_steps=steps,
                semantic_guidance=guidance,
                latents=chunk,
                output_type="pt",
            ).images
        )
    return torch.cat(out)


def text_guidance(weight: float, encoder, prompt: str) -> TextGuidance | None:
    """Text guidance towards ``prompt`` at ``weight`` (None, unguided, at weight 0)."""
    return TextGuidance(weight=weight, encoder=encoder, text=prompt) if weight > 0 else None


def success_rate(judge, images: torch.Tensor, attribute: str, value: str) -> float:
    """The share of ``images`` (in [0, 1]) the judge gives ``value`` of ``attribute``."""
    predicted = judge.predict(images * 2 - 1)[attribute]
    return (predicted == ATTRIBUTE_VALUES[attribute].index(value)).float().mean().item()


def text_rates(pipe, judge, encoder, weight: float, args) -> dict[str, float]:
    """Judge's rate of each asked value under text guidance with ``encoder`` at ``weight``."""
    rates = {}
    for (attribute, value), prompt in VALUES.items():
        images = sample(pipe, args.n, args.seed, text_guidance(weight, encoder, prompt), args.steps)
        rates[value] = success_rate(judge, images, attribute, value)
    return rates


def diversity(distance, images: torch.Tensor, pairs: int = 64) -> float:
    """Mean feature distance over ``pairs`` random pairs of distinct images."""
    rng = np.random.default_rng(0)
    index = [tuple(rng.choice(len(images), 2, replace=False)) for _ in range(pairs)]
    a = torch.stack([images[i] for i, _ in index]) * 2 - 1
    b = torch.stack([images[j] for _, j in index]) * 2 - 1
    with torch.no_grad():
        return distance(a, b).mean().item()


def sweep(pipe, judge, encoder, args) -> list[dict]:
    """Per text weight: success rate over all values, diversity and Fréchet distance to real crops."""
    distance = clip_feature_distance(bundled("clip"))
    features = JudgeFeatures(judge)
    real = (make_crops(4321, 512, size=32).images + 1) / 2
    real_features = features(real)
    rows = []
    for weight in args.sweep:
        success, div, fakes = [], [], []
        for (attribute, value), prompt in VALUES.items():
            images = sample(pipe, args.n_sweep, args.seed + 1, text_guidance(weight, encoder, prompt), args.steps)
            success.append(success_rate(judge, images, attribute, value))
            div.append(diversity(distance, images))
            fakes.append(images)
        fid = frechet_distance(features(torch.cat(fakes)), real_features)
        rows.append(
            {"weight": weight, "success": float(np.mean(success)), "diversity": float(np.mean(div)), "fid_demo": fid}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def distinct_references(seed: int, n: int) -> torch.Tensor:
    """``n`` crops ``(n, 3, 32, 32)`` in [-1, 1], each from a different panorama (the world gives 4 per panorama)."""
    return make_crops(seed, 4 * n, size=32).images[::4]


def content(pipe, judge, encoder, args) -> dict:
    """Top-1 retrieval of each sample's own reference among ``args.references`` by the judge's features."""
    references = distinct_references(777, args.references)
    noise = {"alphas_cumprod": pipe.alphas_cumprod, "generator": torch.Generator().manual_seed(1)}
    guidance = ContentGuidance(weight=args.image_weight, encoder=encoder, reference=references, **noise)
    guided = sample(pipe, len(references), args.seed, guidance, args.steps)
    plain = sample(pipe, len(references), args.seed, None, args.steps)
    features = JudgeFeatures(judge)
    ref_features = features((references + 1) / 2)

    def top1(images: torch.Tensor) -> float:  # each sample's own reference is the one of its index
        return topk_retrieval(features(images), ref_features, torch.arange(len(images)), ks=(1,))[1]

    save_grid([(references + 1) / 2, plain, guided], args.out / "content.png")
    return {"guided_top1": top1(guided), "unguided_top1": top1(plain), "references": len(references)}


def gram_distance(judge, images01: torch.Tensor, reference01: torch.Tensor) -> torch.Tensor:
    """Per sample: sum over the judge's conv stages of the MSE between Gram matrices (sample vs reference), the
    Gatys style loss of :func:`syncguide.metrics.pairwise.style_loss`."""
    with torch.no_grad():
        grams = [[gram(m.flatten(2)) for m in judge_maps(judge, x * 2 - 1)] for x in (images01, reference01)]
        return style_loss(*grams)


def style(pipe, judge, encoder, args) -> dict:
    """Mean Gram distance to the style reference, guided vs unguided (same noise), over 4 references."""
    references = distinct_references(999, 4)
    per_sample = references.repeat_interleave(args.n_style, dim=0)
    noise = {"alphas_cumprod": pipe.alphas_cumprod, "generator": torch.Generator().manual_seed(1)}
    guidance = StyleGuidance(weight=args.style_weight, encoder=encoder, reference=per_sample, **noise)
    guided = sample(pipe, len(per_sample), args.seed, guidance, args.steps)
    plain = sample(pipe, args.n_style, args.seed, None, args.steps).repeat(len(references), 1, 1, 1)
    d_guided = gram_distance(judge, guided, (per_sample + 1) / 2).view(len(references), -1).mean(1)
    d_plain = gram_distance(judge, plain, (per_sample + 1) / 2).view(len(references), -1).mean(1)
    rows = [(references + 1) / 2, plain[: args.n_style][:4]]
    rows += [guided[k * args.n_style : k * args.n_style + 4] for k in range(len(references))]
    save_grid([torch.cat([rows[0], rows[1]]), *rows[2:]], args.out / "style.png")
    return {
        "guided": d_guided.mean().item(),
        "unguided": d_plain.mean().item(),
        "per_reference": list(zip(d_guided.tolist(), d_plain.tolist(), strict=True)),
    }


def noisy_zero_shot(pipe, encoders: dict, args, timesteps=(0, 200, 400, 600, 800, 950)) -> dict:
    """Zero-shot accuracy of time and season on fresh crops noised to t (the DDPM's schedule), per encoder."""
    crops = make_crops(2468, 512, size=32)
    abar = pipe.alphas_cumprod
    out = {}
    for name, encoder in encoders.items():
        rows = {}
        for t in timesteps:
            g = torch.Generator().manual_seed(t)
            x = q_sample(crops.images, torch.tensor(t), abar, torch.randn(crops.images.shape, generator=g))
            with torch.no_grad():
                image = torch.nn.functional.normalize(encoder.embed(x, torch.full((len(x),), t)), dim=-1)
                for attribute, values in ATTRIBUTE_VALUES.items():
                    texts = [VALUES[(attribute, v)] for v in values]
                    text = torch.nn.functional.normalize(encoder.embed_text(texts), dim=-1)
                    hit = (image @ text.T).argmax(1).eq(crops.labels[attribute]).float().mean().item()
                    rows.setdefault(attribute, {})[t] = hit
        out[name] = rows
    return out


def save_grid(rows: list[torch.Tensor], path: Path, scale: int = 3) -> None:
    """Rows of images ``(k, 3, h, w)`` in [0, 1] as one PNG, enlarged ``scale`` times."""
    width = max(len(r) for r in rows)
    h, w = rows[0].shape[-2:]
    canvas = torch.ones(3, len(rows) * (h + 2), width * (w + 2))
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            canvas[:, i * (h + 2) : i * (h + 2) + h, j * (w + 2) : j * (w + 2) + w] = image
    pixels = (canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST).save(path)


def text_picture(pipe, encoder, weight: float, args) -> None:
    """Unguided samples above guided ones for every asked value (same noise)."""
    rows = [sample(pipe, 8, args.seed, None, args.steps)]
    for prompt in VALUES.values():
        rows.append(sample(pipe, 8, args.seed, TextGuidance(weight=weight, encoder=encoder, text=prompt), args.steps))
    save_grid(rows, args.out / "text.png")


def table_head(title: str, columns: list[str], *intro: str) -> list[str]:
    """The first lines of a Markdown section: its heading, any intro paragraphs, the table's header and rule."""
    paragraphs = [line for paragraph in intro for line in (paragraph, "")]
    return [f"## {title}", "", *paragraphs, "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def table_row(first: object, values: list[float]) -> str:
    """A Markdown table row: ``first``, then ``values`` with 3 decimals."""
    return f"| {first} | " + " | ".join(f"{v:.3f}" for v in values) + " |"


def report(results: dict, command: str) -> str:
    """The Markdown summary of ``results`` (what ``results.json`` holds)."""
    lines = [f"Command: `{command}` (CPU; seconds per part: {results.get('seconds')}).", ""]
    if "noisy_zero_shot" in results:
        z = results["noisy_zero_shot"]
        columns = ["t", "time, plain CLIP", "time, noise-aware", "season, plain CLIP", "season, noise-aware"]
        lines += table_head("Reading noisy images: zero-shot accuracy at timestep t (512 fresh crops)", columns)
        for t in z["plain"]["time"]:
            lines.append(table_row(t, [z[e][a][t] for a in ("time", "season") for e in ("plain", "noise_aware")]))
        lines.append("")
    if "text" in results:
        r = results["text"]
        lines += table_head(
            f"Text guidance (weight {r['weight']:g}, {r['n']} samples per value, DDPM 100 steps)",
            ["asked value", "unguided", "plain CLIP", "noise-aware CLIP"],
            "Judge's rate of the asked value (same initial noise in every column):",
        )
        for value in r["unguided"]:
            lines.append(table_row(value, [r[k][value] for k in ("unguided", "plain_clip", "noise_aware")]))
        means = [np.mean(list(r[k].values())) for k in ("unguided", "plain_clip", "noise_aware")]
        lines += [
            "| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |",
            "",
            "Picture: `text.png` (top row unguided; then one row per asked value, in the table's order).",
            "",
        ]
    if "sweep" in results:
        columns = ["weight", "success rate", "diversity (demo-CLIP feature distance)", "FID on the judge's features"]
        lines += table_head("Text-guidance weight sweep (noise-aware CLIP)", columns)
        for row in results["sweep"]:
            lines.append(
                f"| {row['weight']:g} | {row['success']:.3f} | {row['diversity']:.3f} | {row['fid_demo']:.2f} |"
            )
        lines.append("")
    if "content" in results:
        c = results["content"]
        lines += [
            f"## Content guidance (weight {c['weight']:g})",
            "",
            f"Top-1 retrieval of each sample's own reference among {c['references']} references by the "
            f"judge's features: **{c['guided_top1']:.2f}** guided, {c['unguided_top1']:.2f} unguided (chance "
            f"{1 / c['references']:.2f}). Picture: `content.png` (references, unguided, guided).",
            "",
        ]
    if "style" in results:
        st = results["style"]
        lines += [
            f"## Style guidance (weight {st['weight']:g})",
            "",
            f"Gram distance to the reference over the judge's conv stages (mean over 4 references): "
            f"**{st['guided']:.2e}** guided vs {st['unguided']:.2e} unguided. Picture: `style.png` (first row: "
            "the 4 references then 4 unguided samples; then 4 guided samples per reference).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", required=True, help="the noise-aware demo CLIP (fine-tuned)")
    parser.add_argument("--parts", default="noisy,text,sweep,content,style")
    parser.add_argument("--text-weight", type=float, default=300.0)
    parser.add_argument("--image-weight", type=float, default=3000.0, help="content guidance weight")
    parser.add_argument("--style-weight", type=float, default=30000.0)
    parser.add_argument("--sweep", type=float, nargs="+", default=[0, 100, 300, 1000, 3000])
    parser.add_argument("--n-sweep", type=int, default=16, help="samples per asked value in the sweep")
    parser.add_argument("--n", type=int, default=32, help="samples per asked value")
    parser.add_argument("--n-style", type=int, default=8)
    parser.add_argument("--references", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/sdg"))
    parser.add_argument("--report-only", metavar="COMMAND", help="rewrite README.md from results.json for COMMAND")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        (args.out / "README.md").write_text(report(results, args.report_only))
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = SemanticGuidancePipeline.from_pretrained(bundled("ddpm"))
    pipe.set_progress_bar_config(disable=True)
    judge = load_judge(bundled("judge"))
    noise_aware, plain = load_clip(args.clip), load_clip("demo")
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    parts = args.parts.split(",")
    start = time.perf_counter()
    if "noisy" in parts:
        results["noisy_zero_shot"] = noisy_zero_shot(pipe, {"plain": plain, "noise_aware": noise_aware}, args)
        print(json.dumps(results["noisy_zero_shot"]), flush=True)
    if "text" in parts:
        results["text"] = {
            "weight": args.text_weight,
            "n": args.n,
            "unguided": text_rates(pipe, judge, noise_aware, 0.0, args),
            "plain_clip": text_rates(pipe, judge, plain, args.text_weight, args),
            "noise_aware": text_rates(pipe, judge, noise_aware, args.text_weight, args),
        }
        text_picture(pipe, noise_aware, args.text_weight, args)
        print(json.dumps(results["text"]), flush=True)
    if "sweep" in parts:
        results["sweep"] = sweep(pipe, judge, noise_aware, args)
    if "content" in parts:
        results["content"] = {"weight": args.image_weight, **content(pipe, judge, noise_aware, args)}
        print(json.dumps(results["content"]), flush=True)
    if "style" in parts:
        results["style"] = {"weight": args.style_weight, **style(pipe, judge, noise_aware, args)}
        print(json.dumps(results["style"]), flush=True)
    results.setdefault("seconds", {})[",".join(parts)] = round(time.perf_counter() - start, 1)
    results_path.write_text(json.dumps(results, indent=2))
    command = "python benchmarks/sdg_demo.py " + " ".join(sys.argv[1:])
    (args.out / "README.md").write_text(report(results, command))


if __name__ == "__main__":
    main()
