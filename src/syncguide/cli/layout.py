"""``syncguide layout``: an image from a background prompt plus region prompts with masks or boxes."""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

from syncguide.cli import panorama
from syncguide.cli.recall import add_from_option
from syncguide.errors import UsageError
from syncguide.layout import Layout, Region


class AppendRegion(argparse.Action):
    """Collect ``--region`` and ``--box`` in command-line order as ``(option, prompt, value)``."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        regions = list(getattr(namespace, self.dest) or [])
        regions.append((option, *values))
        setattr(namespace, self.dest, regions)


def add_parser(sub: Any) -> None:
    """Register the ``layout`` subcommand."""
    p = sub.add_parser("layout", help="generate an image from region prompts", description=__doc__)
    p.add_argument(
        "--background", dest="prompt", help="prompt for everything outside the regions (required unless --from)"
    )
    region_options = {"dest": "regions", "action": AppendRegion, "nargs": 2, "default": []}
    p.add_argument(
        "--region",
        metavar=("PROMPT", "MASK"),
        help="a region: its prompt and a mask image (any size; white = inside); repeatable",
        **region_options,
    )
    p.add_argument(
        "--box",
        metavar=("PROMPT", "X0,Y0,X1,Y1"),
        help="a region: its prompt and a box in fractions of the canvas (0,0 top left); repeatable",
        **region_options,
    )
    panorama.add_sampler_options(p, layout=True)
    add_from_option(p)
    p.add_argument("--out", type=Path, default=Path("layout.png"), help="output PNG (default layout.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def read_regions(items: list[tuple[str, str, str]]) -> list[Region]:
    """The regions of ``--region PROMPT MASK`` and ``--box PROMPT BOX`` items; UsageError naming the option."""
    regions = []
    for option, prompt, value in items:
        try:
            regions.append(Region.from_file(prompt, value) if option == "--region" else Region(prompt, box=_box(value)))
        except ValueError as error:
            raise UsageError(f"{option}: {error}") from None
    return regions


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ValueError(f"a box is 4 comma-separated fractions X0,Y0,X1,Y1; got {text!r}")
    return values


def check_coverage(regions: list[Region], items: list[tuple[str, str, str]], height: int, width: int) -> None:
    """Raise UsageError naming the option if a region covers no pixel of the ``height`` x ``width`` latent grid."""
    for region, (option, prompt, value) in zip(regions, items, strict=True):
        if not region.latent_mask(height, width).any():
            raise UsageError(
                f"{option}: the region of {prompt!r} ({value}) covers no latent pixel of the {height} x {width}"
                " latent canvas (a latent pixel is inside where at least half its area is)"
            )


STRETCH = 1.1
"""A mask whose aspect ratio differs from the canvas' by more than this factor is stretched: say so."""


def warn_if_stretched(regions: list[Region], items: list[tuple[str, str, str]], height: int, width: int) -> None:
    """Warn (one line each) for every mask image whose aspect ratio differs from the ``height`` x ``width``
    canvas' by more than :data:`STRETCH`: it is resized to the canvas, so its shapes are distorted."""
    for region, (option, prompt, value) in zip(regions, items, strict=True):
        if region.mask is None:
            continue
        h, w = region.mask.shape
        factor = (w / h) / (width / height)
        if max(factor, 1 / factor) > STRETCH:
            warnings.warn(
                f"{option} {prompt!r}: the mask {value} is {w} x {h} px, stretched {max(factor, 1 / factor):.1f}x"
                f" to the {width} x {height} canvas",
                stacklevel=2,
            )


def run(args: argparse.Namespace) -> int:
    """Generate, save the PNG with its parameters, print them as one JSON line."""
    job, layout = prepare(args)
    start = time.perf_counter()
    image = job.pipe.layout(layout, **job.call_arguments()).images[0]
    panorama.report(job, args, image, start)
    return 0


def prepare(
    args: argparse.Namespace, pipelines: dict | None = None, quiet: bool = False
) -> tuple[panorama.PanoramaJob, Layout]:
    """Check ``args`` and resolve what the layout needs: the panorama job (its ``parameters`` with the regions)
    and the :class:`Layout`. ``pipelines`` and ``quiet`` as in :func:`panorama.prepare`."""
    regions = read_regions(args.regions)
    job = panorama.prepare(args, pipelines, quiet, layout=True)
    scale = job.pipe.backbone.vae_scale
    check_coverage(regions, args.regions, job.settings.height // scale, job.settings.width // scale)
    warn_if_stretched(regions, args.regions, job.settings.height, job.settings.width)
    job.parameters = parameters(job.parameters, args.regions)
    return job, Layout(args.prompt, tuple(regions))


def parameters(panorama_parameters: dict[str, Any], items: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Every setting that determines the image, as stored in the PNG: panorama's, with the layout's regions."""
    params = dict(panorama_parameters)
    params["background"] = params.pop("prompt")
    params["regions"] = [
        {"prompt": prompt, "mask" if option == "--region" else "box": value} for option, prompt, value in items
    ]
    return params
