"""Evaluate a directory of panoramas per method: the SyncDiffusion paper's metrics, resumable and split.

Methods are told apart by the parameters ``syncguide panorama`` stores in every PNG (MultiDiffusion, or
SyncDiffusion with its w0). Per-image work is cached under the output directory (a rerun skips it) and split
across processes under ``accelerate launch``. Everything is checked before any work; a bad setting is a
:class:`~syncguide.errors.SettingError` naming it.

Example::

    results = evaluate(EvalSettings(Path("panoramas"), reference=Path("references")))
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from syncguide import registry
from syncguide.atomic import write_atomic
from syncguide.errors import SettingError
from syncguide.evaluation.compute import MetricSettings, compute_records, read_records, summarize
from syncguide.evaluation.inputs import Panorama, check_one_size, list_pngs, read_panorama_dir, read_prompts
from syncguide.evaluation.records import NEEDS_REFERENCE, PANORAMA_METRICS
from syncguide.evaluation.report import write_report
from syncguide.metrics.networks import REAL, MetricNetworks, load_networks, real_networks
from syncguide.scaleout import process_state

AUTO = "auto"
"""The networks registered under the name of the registered model that made every panorama (``demo`` for the
bundled demo model), else ``real``."""


@dataclass(frozen=True)
class NetworkSettings:
    """Which metric networks: ``name`` is ``auto``, ``real`` or a registered set (``demo``); the real networks'
    local weight files (None downloads) and CLIP (hub id or directory)."""

    name: str = AUTO
    lpips_weights: Path | None = None
    vgg19_weights: Path | None = None
    inception_weights: Path | None = None
    clip_model: str = "openai/clip-vit-base-patch16"


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate and how.

    Attributes:
        panorama_dir: PNGs written by ``syncguide panorama`` (one size; their stored parameters name the method) or
            ``syncguide layout`` (their own methods, ``... (layout)``; the background prompt is their prompt).
        reference: window-size images from the same model (GIQA, FID, KID), or None.
        prompts: a prompt file; only panoramas with these prompts are evaluated (None: all).
        metrics: names from ``PANORAMA_METRICS`` (None: every one the inputs and networks allow).
        networks: the metric networks (:class:`NetworkSettings`).
        bootstrap: bootstrap rounds of the FID interval (>= 0).
        kid_subset_size: KID's subset size (>= 2; capped at the sample counts).
        device: where the networks run (None: this process's device, ``cuda:LOCAL_RANK`` under accelerate).
        out: the report directory (None: ``PANORAMA_DIR-eval`` beside the panoramas).
        overwrite: replace a report of other inputs in ``out``.
        command_line: the command that asked for this, recorded in the results.
    """

    panorama_dir: Path
    reference: Path | None = None
    prompts: Path | None = None
    metrics: tuple[str, ...] | None = None
    networks: NetworkSettings = field(default_factory=NetworkSettings)
    bootstrap: int = 20
    kid_subset_size: int = 1000
    device: torch.device | None = None
    out: Path | None = None
    overwrite: bool = False
    command_line: str = "syncguide eval"

    @property
    def out_dir(self) -> Path:
        """The report directory: ``out``, or ``PANORAMA_DIR-eval``."""
        return self.out or self.panorama_dir.with_name(self.panorama_dir.name + "-eval")


@dataclass(frozen=True)
class EvalInputs:
    """The checked inputs: panoramas, reference files, the crop size (the panoramas' height), the networks' name."""

    panoramas: list[Panorama]
    references: list[Path]
    crop: int
    networks: str


def evaluate(settings: EvalSettings, state: Any = None) -> dict[str, Any]:
    """Check, compute the records (every process), then on the main process summarise and write the report
    (``results.json``, ``results.md``, plots) to ``settings.out_dir``. Returns the results (empty elsewhere)."""
    state = state or process_state()
    inputs = check_inputs(settings)
    networks = _load(settings.networks, inputs.networks, settings.device or state.device)
    metrics = check_metrics(settings, inputs, networks)
    names = {**networks.names, **({"judge": networks.judge.description} if networks.judge else {})}
    metric_settings = MetricSettings(
        metrics, inputs.crop, names, kid_subset_size=settings.kid_subset_size, bootstrap=settings.bootstrap
    )
    claim_out(settings, inputs.panoramas, metric_settings, state)
    out = settings.out_dir
    compute_records(inputs.panoramas, inputs.references, networks, metric_settings, out / "cache", state)
    results: dict[str, Any] = {}
    if state.is_main_process:
        results = summarize_methods(settings, inputs, metric_settings)
        write_report(out, results)
    state.wait_for_everyone()
    return results


def check_inputs(settings: EvalSettings) -> EvalInputs:
    """Read and check the files and options before any work (SettingError naming the setting)."""
    if settings.bootstrap < 0:
        raise SettingError("bootstrap", f"must be >= 0; got {settings.bootstrap}")
    if settings.kid_subset_size < 2:
        raise SettingError("kid_subset_size", f"must be >= 2; got {settings.kid_subset_size}")
    unknown = sorted(set(settings.metrics or ()) - set(PANORAMA_METRICS))
    if unknown:
        raise SettingError("metrics", f"must be among {', '.join(PANORAMA_METRICS)}; got {unknown[0]!r}")
    prompts = read_prompts(settings.prompts) if settings.prompts else None
    panoramas, (crop, width) = read_panorama_dir(settings.panorama_dir, prompts)
    if width % crop or width < 2 * crop:
        rule = f"width must be a multiple (>= 2) of the height (crop size); got {crop}x{width}"
        raise SettingError("panorama_dir", rule)
    references = list_pngs(settings.reference, "reference") if settings.reference else []
    if references and check_one_size(references, "reference") != (crop, crop):
        raise SettingError("reference", f"images must be {crop}x{crop} (the panoramas' window size)")
    needed = sorted(set(settings.metrics or ()) & set(NEEDS_REFERENCE))
    if not references and needed:
        raise SettingError("reference", f"needed for {', '.join(needed)}")
    check_out(settings)
    return EvalInputs(panoramas, references, crop, resolve_networks(settings.networks.name, panoramas))


def resolve_networks(choice: str, panoramas: list[Panorama]) -> str:
    """``auto``: the registered networks of the registered model that made every panorama, else ``real``."""
    if choice != AUTO:
        if choice != REAL and not registry.registered("metric-networks", choice):
            known = ", ".join((AUTO, REAL, *registry.names("metric-networks")))
            raise SettingError("networks", f"must be one of {known}; got {choice!r}")
        return choice
    models = {p.parameters.get("model", "") for p in panoramas}
    makers = {registry.model_name(model) for model in models}
    maker = makers.pop() if len(makers) == 1 else None
    return maker if maker is not None and registry.registered("metric-networks", maker) else REAL


def check_metrics(settings: EvalSettings, inputs: EvalInputs, networks: MetricNetworks) -> tuple[str, ...]:
    """The metrics to compute: those asked for, or every one the references and networks allow."""
    judged = networks.judge is not None and networks.judge.crop == inputs.crop
    if settings.metrics is None:
        allowed = [m for m in PANORAMA_METRICS if inputs.references or m not in NEEDS_REFERENCE]
        return tuple(m for m in allowed if m != "judge" or judged)
    if "judge" in settings.metrics and not judged:
        crop = f"{networks.judge.crop}-px" if networks.judge else "their"
        raise SettingError("metrics", f"judge needs networks with a judge (demo) and {crop} panoramas")
    return tuple(settings.metrics)


def _load(settings: NetworkSettings, name: str, device: torch.device) -> MetricNetworks:
    if name != REAL:
        return load_networks(name, device)
    weights = (settings.lpips_weights, settings.vgg19_weights, settings.inception_weights)
    try:
        return real_networks(device, *weights, clip=settings.clip_model)
    except Exception as error:  # no weights offline, a bad file: one error naming the setting
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SettingError("networks", f"cannot load the real metric networks ({first}); try 'demo'") from None


CLAIM = "evaluation.json"
"""The file in the output directory that records what it evaluates (:func:`claim_out`)."""
CLAIM_KEYS = ("panoramas", "references", "prompts", "settings")


def check_out(settings: EvalSettings) -> None:
    """Refuse, before any work, an output directory that cannot hold the report: a file, the panorama or
    reference directory (the report's plots are PNGs), one whose parent cannot be written, or one whose
    ``evaluation.json`` is not an evaluation record (unless ``overwrite``: :func:`read_claim`)."""
    out = settings.out_dir
    if out.exists() and not out.is_dir():
        raise SettingError("out", f"{out} exists and is not a directory")
    inputs = [settings.panorama_dir, *([settings.reference] if settings.reference else [])]
    if any(_same_directory(out, directory) for directory in inputs):
        raise SettingError("out", f"{out} is an input directory; give the report a directory of its own")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SettingError("out", f"cannot write in {existing}")
    read_claim(out / CLAIM, settings.overwrite)


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def read_claim(path: Path, overwrite: bool) -> dict[str, Any] | None:
    """The evaluation record ``path`` (None if there is none, or, with ``overwrite``, if it is not a record).

    SettingError (``out``) if it is not a regular file, or (without ``overwrite``) not UTF-8 JSON of the shape
    :func:`claim_out` writes: such a file is never replaced silently."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        raise SettingError("out", f"{path} is not a regular file; remove it or use another directory")
    try:
        recorded = json.loads(path.read_bytes().decode("utf-8"))
        problem = None
        if not isinstance(recorded, dict):
            problem = f"a JSON {type(recorded).__name__}, not an object"
        elif any(key not in recorded for key in CLAIM_KEYS):
            problem = f"no '{next(key for key in CLAIM_KEYS if key not in recorded)}'"
    except OSError as error:
        raise SettingError("out", f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, not JSON
        problem = "not JSON" if isinstance(error, json.JSONDecodeError) else "not UTF-8 text"
    if problem is None:
        return recorded
    if overwrite:
        return None
    rule = f"{path} is not an evaluation record ({problem}); overwrite it (--overwrite) or use another directory"
    raise SettingError("out", rule)


def claim_out(settings: EvalSettings, panoramas: list[Panorama], metric_settings: MetricSettings, state: Any) -> None:
    """Record what the output directory evaluates; refuse (unless ``overwrite``) one holding another evaluation."""
    source = {
        "panoramas": str(settings.panorama_dir),  # as given: a report committed with its inputs stays portable
        "references": str(settings.reference) if settings.reference else None,
        "prompts": sorted({p.prompt for p in panoramas}),
        "settings": metric_settings.record_settings(),
    }
    out = settings.out_dir
    path = out / CLAIM
    recorded = read_claim(path, settings.overwrite)
    if recorded is not None and recorded != source and not settings.overwrite:
        raise SettingError(
            "out", f"{out} holds an evaluation of other inputs; overwrite it (--overwrite) or use another directory"
        )
    state.wait_for_everyone()
    if state.is_main_process:
        write_atomic(path, json.dumps(source, indent=2).encode(), overwrite=True)
    state.wait_for_everyone()


def summarize_methods(settings: EvalSettings, inputs: EvalInputs, metric_settings: MetricSettings) -> dict[str, Any]:
    """``{"methods": {label: {"sync_weight", "n", "prompts", "metrics"}}, "networks", "crop", ...}`` from the
    records."""
    cache = settings.out_dir / "cache"
    reference = None
    if inputs.references:
        reference = torch.cat([r["features"] for r in read_records(cache, "references", inputs.references)])
    groups: dict[str, list[Panorama]] = defaultdict(list)
    for panorama in inputs.panoramas:
        groups[panorama.method].append(panorama)
    methods = {}
    for label, members in groups.items():
        records = read_records(cache, "panoramas", [p.path for p in members])
        methods[label] = {
            "sync_weight": members[0].sync_weight,
            "n": len(members),
            "prompts": sorted({p.prompt for p in members}),
            "metrics": summarize(records, reference, metric_settings),
        }
    return {
        "methods": methods,
        "networks": metric_settings.networks,
        "crop": metric_settings.crop,
        "n_references": len(inputs.references),
        "metrics": list(metric_settings.metrics),
        "command": settings.command_line,
    }
