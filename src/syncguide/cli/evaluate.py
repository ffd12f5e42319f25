"""``syncguide eval``: the SyncDiffusion paper's metrics for a directory of panoramas, per method.

Methods are told apart by the parameters ``syncguide panorama`` stores in every PNG (MultiDiffusion, or
SyncDiffusion with its w0). Per-image work is cached under ``--out`` (a rerun skips it) and split across
processes under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from syncguide.errors import UsageError
from syncguide.evaluation.inputs import Panorama, check_one_size, list_pngs, read_panoramas, read_prompts
from syncguide.evaluation.records import NEEDS_REFERENCE, PANORAMA_METRICS

NETWORKS = ("auto", "demo", "real")


def add_parser(sub: Any) -> None:
    """Register the ``eval`` subcommand."""
    p = sub.add_parser("eval", help="evaluate panoramas (Intra-LPIPS, Intra-Style-L, GIQA, FID, KID, CLIP-S)")
    p.add_argument("panorama_dir", type=Path, metavar="PANORAMA_DIR", help="PNGs written by syncguide panorama")
    p.add_argument("--reference", type=Path, help="window-size images from the same model (GIQA, FID, KID)")
    p.add_argument("--prompts", type=Path, help="evaluate only panoramas with these prompts (one per line)")
    p.add_argument("--metrics", nargs="+", choices=PANORAMA_METRICS, help="default: all that the inputs allow")
    p.add_argument(
        "--networks",
        choices=NETWORKS,
        default="auto",
        help="metric networks: real (LPIPS-VGG, VGG19, Inception, CLIP ViT-B/16), demo (the demo world's), "
        "auto (demo for panoramas of the bundled demo model)",
    )
    p.add_argument("--lpips-weights", type=Path, help="real: local VGG16 trunk weights for LPIPS")
    p.add_argument("--vgg19-weights", type=Path, help="real: local torchvision VGG19 weights")
    p.add_argument("--inception-weights", type=Path, help="real: local FID Inception weights (pt_inception)")
    p.add_argument("--clip-model", default="openai/clip-vit-base-patch16", help="real: CLIP hub id or directory")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap rounds for the FID interval (default 20)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="capped at the sample counts (default 1000)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    p.add_argument("--out", type=Path, help="report directory (default PANORAMA_DIR-eval)")
    p.add_argument("--overwrite", action="store_true", help="replace a report of other inputs in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, compute the records (resumable), then (main process) summarise and report."""
    from syncguide.scaleout import process_state

    inputs = check_inputs(args)
    state = process_state()
    results = evaluate(args, *inputs, state)
    if state.is_main_process:
        print((args.out / "results.md").read_text())
        print(json.dumps({"out": str(args.out), "methods": list(results["methods"])}))
    return 0


def check_inputs(args: argparse.Namespace) -> tuple[list[Panorama], list[Path], tuple[str, ...]]:
    """Read and check everything before any work: returns panoramas, reference files and metrics."""
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap: must be >= 0; got {args.bootstrap}")
    if args.kid_subset_size < 2:
        raise UsageError(f"--kid-subset-size: must be >= 2; got {args.kid_subset_size}")
    prompts = read_prompts(args.prompts) if args.prompts else None
    panoramas = read_panoramas(args.panorama_dir, prompts)
    crop, width = check_one_size([p.path for p in panoramas], "PANORAMA_DIR")
    if width % crop or width < 2 * crop:
        raise UsageError(f"PANORAMA_DIR: width must be a multiple (>= 2) of the height (crop size); got {crop}x{width}")
    references = list_pngs(args.reference, "--reference") if args.reference else []
    if references and check_one_size(references, "--reference") != (crop, crop):
        raise UsageError(f"--reference: images must be {crop}x{crop} (the panoramas' window size)")
    args.networks = resolve_networks(args.networks, panoramas)
    metrics = tuple(args.metrics or default_metrics(bool(references), args.networks))
    if not references and set(metrics) & set(NEEDS_REFERENCE):
        raise UsageError(f"--reference: needed for {', '.join(sorted(set(metrics) & set(NEEDS_REFERENCE)))}")
    if "judge" in metrics and (args.networks != "demo" or crop != 64):
        raise UsageError("--metrics: judge needs demo networks and 64-px demo panoramas")
    args.out = args.out or args.panorama_dir.with_name(args.panorama_dir.name + "-eval")
    args.crop = crop
    return panoramas, references, metrics


def resolve_networks(choice: str, panoramas: list[Panorama]) -> str:
    """``auto``: demo when every panorama comes from the bundled demo model, else real."""
    if choice != "auto":
        return choice
    from syncguide.demo.bundled import is_bundled

    return "demo" if all(is_bundled(p.parameters.get("model", "")) for p in panoramas) else "real"


def default_metrics(with_reference: bool, networks: str) -> list[str]:
    metrics = [m for m in PANORAMA_METRICS if with_reference or m not in NEEDS_REFERENCE]
    return [m for m in metrics if m != "judge" or networks == "demo"]


def evaluate(
    args: argparse.Namespace, panoramas: list[Panorama], references: list[Path], metrics: tuple[str, ...], state: Any
) -> dict[str, Any]:
    """Records (every process), then on the main process the summary and the report files."""
    from syncguide.cli.loading import resolve_device
    from syncguide.evaluation.compute import EvalSettings, compute_records

    device = state.device if args.device == "auto" else resolve_device(args.device)
    networks, judge = load_networks(args, device)
    names = {
        **networks.names,
        **({"judge": "the demo judge: time and season agreement of crop pairs"} if judge else {}),
    }
    settings = EvalSettings(metrics, args.crop, names, kid_subset_size=args.kid_subset_size, bootstrap=args.bootstrap)
    claim_out(args, panoramas, references, settings, state)
    compute_records(panoramas, references, networks, settings, args.out / "cache", state, judge)
    results: dict[str, Any] = {}
    if state.is_main_process:
        results = summarize_methods(args, panoramas, references, settings)
        from syncguide.evaluation.report import write_report

        write_report(args.out, results)
    state.wait_for_everyone()
    return results


def load_networks(args: argparse.Namespace, device: torch.device) -> tuple[Any, Any]:
    """The metric networks (and the demo judge's agreement function, demo only)."""
    from syncguide.metrics.networks import demo_networks, real_networks

    if args.networks == "demo":
        from syncguide.demo.judging import coherence

        networks = demo_networks(device)
        judge = networks.features.judge  # the bundled judge the demo networks already loaded
        return networks, lambda x: coherence(judge, x)["both"]
    try:
        networks = real_networks(
            device,
            lpips_weights=args.lpips_weights,
            vgg19_weights=args.vgg19_weights,
            inception_weights=args.inception_weights,
            clip=args.clip_model,
        )
    except Exception as error:  # no weights offline, a bad file: one line naming the option
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--networks: cannot load the real metric networks ({first}); try --networks demo") from None
    return networks, None


def claim_out(args: argparse.Namespace, panoramas: list, references: list, settings: Any, state: Any) -> None:
    """Record what ``--out`` evaluates; refuse (unless ``--overwrite``) a directory holding another evaluation."""
    from syncguide.atomic import write_atomic

    source = {
        "panoramas": str(args.panorama_dir),  # as given: a report committed with its inputs stays portable
        "references": str(args.reference) if args.reference else None,
        "prompts": sorted({p.prompt for p in panoramas}),
        "settings": settings.stamp_settings(),
    }
    path = args.out / "evaluation.json"
    if path.exists() and json.loads(path.read_text()) != source and not args.overwrite:
        raise UsageError(f"--out: {args.out} holds an evaluation of other inputs; pass --overwrite or a new --out")
    state.wait_for_everyone()
    if state.is_main_process:
        write_atomic(path, json.dumps(source, indent=2).encode(), overwrite=True)
    state.wait_for_everyone()


def summarize_methods(
    args: argparse.Namespace, panoramas: list[Panorama], references: list[Path], settings: Any
) -> dict[str, Any]:
    """``{"methods": {label: {"sync_weight", "n", "metrics"}}, "networks", "crop", ...}`` from the records."""
    from syncguide.evaluation.compute import read_records, summarize

    cache = args.out / "cache"
    reference = None
    if references:
        reference = torch.cat([r["features"] for r in read_records(cache, "references", references)])
    groups: dict[str, list[Panorama]] = defaultdict(list)
    for panorama in panoramas:
        groups[panorama.method].append(panorama)
    methods = {}
    for label, members in groups.items():
        records = read_records(cache, "panoramas", [p.path for p in members])
        methods[label] = {
            "sync_weight": members[0].sync_weight,
            "n": len(members),
            "prompts": sorted({p.prompt for p in members}),
            "metrics": summarize(records, reference, settings),
        }
    return {
        "methods": methods,
        "networks": settings.networks,
        "crop": settings.crop,
        "n_references": len(references),
        "metrics": list(settings.metrics),
        "command": "syncguide " + " ".join(sys.argv[1:]),
    }
