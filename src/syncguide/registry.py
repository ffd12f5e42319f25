"""Named resources that plug-ins register with the library core.

The core (models, sampling, guidance, metrics, evaluation, the pipelines) never imports ``syncguide.cli`` or
``syncguide.demo``. Names such as ``demo`` (a CLIP spec, a metric-network set, a dataset) are looked up here; a
plug-in registers factories for them. Plug-ins are found through the ``syncguide.plugins`` entry-point group
(each entry point is a zero-argument function that calls :func:`register`) the first time a lookup misses, so
``load_clip("demo")`` works without importing the demo world by hand. The demo world is such a plug-in
(``syncguide.demo.plugin``).

Kinds and the factory signature each expects:

- ``clip``: ``(device) -> CLIPTower | NoiseAwareCLIP``, a guidance encoder
  (:func:`~syncguide.models.guidance_clip.load_clip`)
- ``metric-networks``: ``(device) -> MetricNetworks`` (:mod:`syncguide.metrics.networks`)
- ``perceptual``: ``(device) -> nn.Module`` mapping two [-1, 1] image batches to per-image distances (sync loss)
- ``dataset``: ``(resolution, n, seed) -> Tensor (n, 3, R, R) in [-1, 1]`` (training images)
- ``model``: ``() -> Path`` (a diffusers pipeline directory)

A plug-in that registers a ``model`` and ``metric-networks`` under one name (``demo``) says that those networks
evaluate that model's images (``syncguide eval --networks auto``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

KINDS = ("clip", "metric-networks", "perceptual", "dataset", "model")
ENTRY_POINT_GROUP = "syncguide.plugins"

_factories: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}
_plugins_loaded = False


def register(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """Make ``name`` of ``kind`` resolve to ``factory`` (a later registration of the same name replaces it)."""
    _check_kind(kind)
    _factories[kind][name] = factory


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` of ``kind``; ValueError listing the registered names if there is none."""
    _check_kind(kind)
    if name not in _factories[kind]:
        load_plugins()
    if name not in _factories[kind]:
        known = ", ".join(sorted(_factories[kind])) or "none"
        raise ValueError(f"{kind} {name!r} is not registered (registered: {known})")
    return _factories[kind][name]


def registered(kind: str, name: str) -> bool:
    """Whether ``name`` of ``kind`` resolves (plug-ins are loaded first)."""
    _check_kind(kind)
    if name not in _factories[kind]:
        load_plugins()
    return name in _factories[kind]


def names(kind: str) -> tuple[str, ...]:
    """Every registered name of ``kind``, sorted (plug-ins are loaded first)."""
    _check_kind(kind)
    load_plugins()
    return tuple(sorted(_factories[kind]))


def model_name(path: str | Path) -> str | None:
    """The registered ``model`` name whose directory is ``path`` (None if none is, or ``path`` is empty)."""
    if not str(path):
        return None
    load_plugins()
    try:
        target = Path(path).resolve()
    except OSError:
        return None
    for name, factory in sorted(_factories["model"].items()):
        try:
            if Path(factory()).resolve() == target:
                return name
        except (OSError, ValueError):  # FileNotFoundError: a plug-in's model that is not installed
            continue
    return None


def load_plugins() -> None:
    """Call every ``syncguide.plugins`` entry point once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        point.load()()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
