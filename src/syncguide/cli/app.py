"""``syncguide app``: the web app (Gradio) on this machine, over pipelines loaded once and kept warm."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from syncguide.errors import UsageError


def add_parser(sub: Any) -> None:
    """Register the ``app`` subcommand."""
    p = sub.add_parser("app", help="start the web app", description=__doc__)
    p.add_argument("--model", help="panorama / layout model: hub id or directory (default: the bundled demo model)")
    p.add_argument("--sdg-model", help="unconditional model of the SDG tab (default: the bundled demo DDPM)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port, 1 .. 65535 (default 7860)")
    p.add_argument("--outputs", type=Path, default=Path("outputs/app"), help="where PNGs go (default outputs/app)")
    p.add_argument("--max-width", type=int, default=4096, help="most pixels wide or high per request (default 4096)")
    p.add_argument("--max-steps", type=int, default=150, help="most sampling steps per request (default 150)")
    p.add_argument("--max-samples", type=int, default=16, help="most SDG samples per request (default 16)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest uploaded image in MB (default 20)")
    p.add_argument("--queue-size", type=int, default=16, help="requests waiting at most, >= 1 (default 16)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    p.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> None:
    """UsageError naming the option for a value out of its range, before anything loads."""
    from syncguide.cli.io import check_output_dir
    from syncguide.cli.loading import check_model

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port: must be 1 .. 65535; got {args.port}")
    for name in ("max_width", "max_steps", "max_samples", "queue_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')}: must be >= 1; got {getattr(args, name)}")
    if not args.max_upload_mb > 0:
        raise UsageError(f"--max-upload-mb: must be > 0; got {args.max_upload_mb}")
    if args.model is not None:
        check_model(args.model)
    check_output_dir(args.outputs, "--outputs")


def run(args: argparse.Namespace) -> int:
    """Check, load the model, serve until Ctrl-C."""
    check_arguments(args)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline and private: no phoning home
    launch(args)
    return 0


def launch(args: argparse.Namespace, block: bool = True) -> tuple[Any, Any]:
    """Build and start the app for ``args``; returns the Gradio Blocks and the app's
    :class:`~syncguide.app.service.Service` (serving in the background unless ``block``)."""
    import gradio as gr
    from gradio.utils import get_upload_folder

    from syncguide.app.service import Limits, Service
    from syncguide.app.ui import THEME_FONTS, build
    from syncguide.cli.loading import resolve_device

    device = str(resolve_device(args.device))
    limits = Limits(args.max_width, args.max_steps, args.max_samples, args.max_upload_mb)
    service = Service(args.model, args.outputs, Path(get_upload_folder()), limits, args.sdg_model, device)
    service.warm()
    page = build(service).queue(max_size=args.queue_size, default_concurrency_limit=1)
    page.launch(
        server_name=args.host,
        server_port=args.port,
        allowed_paths=[str(args.outputs.resolve())],
        max_file_size=int(args.max_upload_mb * 2**20),
        theme=gr.themes.Default(**THEME_FONTS),
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        share=False,
    )
    print(f"syncguide app: serving on http://{args.host}:{page.server_port} (Ctrl-C stops)", flush=True)
    if block:
        page.block_thread()
    return page, service
