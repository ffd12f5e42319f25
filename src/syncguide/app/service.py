"""The web app's engine, without Gradio: a form's values become the command line's arguments, checked by the
command line's own parser and ``prepare`` functions, and run in-process on pipelines loaded once.

So every value means what the same option means to ``syncguide panorama / layout / generate``: same names, same
defaults, same one-line errors, same PNG (parameters in its text chunk). The app adds its own limits (width,
steps, samples per request) and checks uploaded files (inside Gradio's upload folder, a bounded size, a
decodable image) before anything runs.
"""

from __future__ import annotations

import argparse
import functools
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncguide.app.runner import Run
from syncguide.cli import generate, layout, panorama
from syncguide.cli.options import key_option
from syncguide.cli.parser import RaisingParser, make_parser, option_actions, subcommands
from syncguide.cli.recall import stored_settings
from syncguide.errors import UsageError
from syncguide.images import read_image

FILE_FIELDS = ("content", "style")
"""Fields whose value is an uploaded image's path."""
REGIONS = 3
"""Region slots of the layout form."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``syncguide app`` flags): so that one request cannot take the machine."""

    max_width: int = 4096
    max_steps: int = 150
    max_samples: int = 16
    max_upload_mb: float = 20.0


@dataclass(frozen=True)
class Result:
    """A finished request: the PNGs written and the parameters stored in them (the first image's)."""

    paths: list[Path]
    parameters: dict[str, Any]


class Service:
    """Runs panorama, layout and generate requests on warm pipelines, one generation per model at a time.

    Args:
        model: the panorama / layout model (hub id or directory; None: the bundled demo model).
        sdg_model: the unconditional model of ``generate`` (None: the demo DDPM).
        outputs: directory for the PNGs (created); names are never reused, nothing is overwritten.
        uploads: the only directory uploaded files may be read from (Gradio's upload folder).
        limits: per-request limits.
        device: as ``--device``.
    """

    def __init__(
        self,
        model: str | None,
        outputs: Path,
        uploads: Path,
        limits: Limits = Limits(),
        sdg_model: str | None = None,
        device: str = "auto",
    ) -> None:
        self.model, self.sdg_model, self.device = model, sdg_model, device
        self.outputs, self.uploads, self.limits = outputs, uploads.resolve(), limits
        self.parser = make_parser((panorama, layout, generate), RaisingParser)
        self.commands = subcommands(self.parser)
        self.pipelines: dict = {}
        self._loading = threading.Lock()
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self.runs: deque[Run] = deque(maxlen=64)  # the latest runs, oldest first (for tests and monitoring)

    # ----- defaults the forms start from

    @functools.cached_property
    def resolved_model(self) -> tuple[str, bool]:
        """``(the panorama model as the command line resolves it, is it the demo model)``."""
        return panorama._model(self.model, quiet=True)

    @functools.cached_property
    def geometry(self) -> panorama.Geometry:
        """Window, VAE scale and default scheduler of the panorama model (its family's), from its config."""
        return panorama.model_geometry(self.resolved_model[0], None)

    def defaults(self, command: str) -> dict[str, Any]:
        """The form's initial values for ``command``: the command line's defaults, resolved for the model."""
        if command == "generate":
            args = self.commands["generate"].parse_args([])
            return {k: getattr(args, k) for k in ("n", "steps", "scheduler", "eta", "seed")}
        demo, geometry = self.resolved_model[1], self.geometry
        perceptual = "demo-clip" if demo else "lpips-vgg"
        settings = panorama.resolve_settings({}, "syncdiffusion", geometry, demo, perceptual)
        values = settings.to_parameters(layout=command == "layout")
        options = option_actions(self.commands[command])
        values = {k: v for k, v in values.items() if key_option(k) in options}  # not window, ...
        return {**values, "seed": 0, "method": "syncdiffusion", "scheduler": geometry.scheduler_name}

    # ----- requests

    def argv(self, command: str, values: Mapping[str, Any]) -> list[str]:
        """The command line of ``command`` that the form ``values`` stand for (unset values are left out)."""
        options = option_actions(self.commands[command])
        argv = [command]
        for name, value in values.items():
            if value is None or value == "" or name in ("prompt", "preview_every") or name.startswith("region"):
                continue
            option = key_option(name)
            if option not in options:
                raise UsageError(f"{name}: not a setting of {command}")
            if name in FILE_FIELDS:
                value = self.check_upload(value, name)
            action = options[option]
            if action.nargs == 0:
                argv += [option] if bool(value) else []
                continue
            if isinstance(value, float) and value.is_integer() and action.type is int:
                value = int(value)
            argv += [option, str(value)]
        if command == "layout":
            argv += self._region_tokens(values)
        if values.get("prompt"):  # last, after "--": a prompt beginning with "-" is still a prompt
            argv += ["--", str(values["prompt"])]
        return argv

    def _region_tokens(self, values: Mapping[str, Any]) -> list[str]:
        """``--box PROMPT BOX`` / ``--region PROMPT MASK`` of the filled region slots."""
        tokens = []
        for k in range(1, REGIONS + 1):
            prompt, box, mask = (values.get(f"region{k}_{part}") for part in ("prompt", "box", "mask"))
            if not prompt:
                if box or mask:
                    raise UsageError(f"region{k}_prompt: a region with a box or mask needs a prompt")
                continue
            if mask:
                tokens += ["--region", prompt, str(self.check_upload(mask, f"region{k}_mask"))]
            elif box:
                tokens += ["--box", prompt, str(box)]
            else:
                raise UsageError(f"region{k}_box: region {k} needs a box X0,Y0,X1,Y1 or a mask")
        return tokens

    def parse(self, command: str, values: Mapping[str, Any]) -> argparse.Namespace:
        """The checked arguments of a request: parsed as the command line parses them, within the app's limits,
        written to a fresh output name. UsageError with the command line's message otherwise."""
        args = self.parser.parse_args(self.argv(command, values))
        if command == "generate":
            args.model = args.model or self.sdg_model
            self._limit("n", args.n, self.limits.max_samples, "--max-samples")
            self._limit("steps", args.steps, self.limits.max_steps, "--max-steps")
            args.batch_size = min(args.batch_size, args.n)
        else:
            args.model = args.model or self.model
            for name in ("width", "height"):
                self._limit(name, getattr(args, name), self.limits.max_width, "--max-width")
            self._limit("steps", args.num_inference_steps, self.limits.max_steps, "--max-steps")
        args.device = self.device
        args.out = self._fresh_output(command, args.seed)
        preview = values.get("preview_every")
        if command != "generate" and preview not in (None, ""):
            args.preview_every = int(preview)
        return args

    @staticmethod
    def _limit(name: str, value: int | None, limit: int, flag: str) -> None:
        if value is not None and value > limit:
            raise UsageError(f"{key_option(name)}: at most {limit} in this app (syncguide app {flag}); got {value}")

    def _fresh_output(self, command: str, seed: int) -> Path:
        """A new name under ``outputs``: a file for panorama / layout, a directory for generate's samples."""
        self.outputs.mkdir(parents=True, exist_ok=True)
        name = f"{command}-{seed}-{uuid.uuid4().hex[:10]}"
        return self.outputs / (name if command == "generate" else f"{name}.png")

    def check_upload(self, value: Any, name: str) -> Path:
        """``value`` (a path, or a Gradio file dict with ``path``) as a readable image inside the upload folder:
        at most ``max_upload_mb``, decodable. UsageError naming ``name`` otherwise."""
        raw = value.get("path") if isinstance(value, Mapping) else value
        if not isinstance(raw, str | Path) or not str(raw):
            raise UsageError(f"{name}: expected an uploaded image; got {type(value).__name__}")
        path = Path(raw).resolve()
        if not path.is_relative_to(self.uploads):
            raise UsageError(f"{name}: only files uploaded to this app can be read; got {raw}")
        if not path.is_file():
            raise UsageError(f"{name}: no such uploaded file")
        size = path.stat().st_size
        if size > self.limits.max_upload_mb * 2**20:
            raise UsageError(f"{name}: at most {self.limits.max_upload_mb:g} MB; got {size / 2**20:.1f} MB")
        try:
            read_image(path, "RGB").close()
        except ValueError as error:
            raise UsageError(f"{name}: {error}") from None
        return path

    def start(self, command: str, values: Mapping[str, Any]) -> Run:
        """Check the request now (UsageError), then run it in the background (:class:`Run`)."""
        args = self.parse(command, values)
        work = {"panorama": self._panorama, "layout": self._layout, "generate": self._generate}[command]
        lock = self._locks[f"{command == 'generate'}:{args.model}"]
        run = Run(lambda run: work(args, run), lock)
        self.runs.append(run)
        return run

    def _panorama(self, args: argparse.Namespace, run: Run) -> Result:
        with self._loading:
            job = panorama.prepare(args, self.pipelines, quiet=True)
        image = job.pipe(job.prompt, **self._call(job, run)).images[0]
        return self._save(image, args.out, job.parameters)

    def _layout(self, args: argparse.Namespace, run: Run) -> Result:
        with self._loading:
            job, plan = layout.prepare(args, self.pipelines, quiet=True)
        image = job.pipe.layout(plan, **self._call(job, run)).images[0]
        return self._save(image, args.out, job.parameters)

    def _generate(self, args: argparse.Namespace, run: Run) -> Result:
        with self._loading:
            job = generate.prepare(args, self.pipelines, quiet=True)
        job.pipe.set_progress_bar_config(disable=True)
        samples = [(indices, job.sample(indices, run.step_callback(args.steps))) for indices in job.batches()]
        paths = [path for indices, images in samples for path in job.save(indices, images)]
        return Result(paths, {**job.parameters, "index": args.start})

    @staticmethod
    def _call(job: panorama.PanoramaJob, run: Run) -> dict[str, Any]:
        job.pipe.set_progress_bar_config(disable=True)  # progress goes to the page, not the server's console
        call = job.call_arguments()
        call["preview"] = run.preview
        call["callback_on_step_end"] = run.step_callback(job.settings.num_inference_steps)
        return call

    @staticmethod
    def _save(image: Any, path: Path, parameters: dict[str, Any]) -> Result:
        from syncguide.cli.io import save_png

        save_png(image, path, parameters, overwrite=False)
        return Result([path], parameters)

    def png_info(self, value: Any) -> dict[str, Any]:
        """The settings stored in an uploaded PNG (ours, or AUTOMATIC1111's text); UsageError if none."""
        return stored_settings(self.check_upload(value, "image"), "image")

    def warm(self) -> None:
        """Load the panorama model (and its sync loss) now, so that the first request starts at once."""
        args = self.parse("panorama", {"prompt": "warm up"})
        with self._loading:
            panorama.prepare(args, self.pipelines, quiet=True)
