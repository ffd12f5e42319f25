"""One settings object for a panorama's (or a layout's) sampling parameters.

:class:`PanoramaSettings` is what ``SyncDiffusionPipeline.__call__`` / ``.layout`` take as keyword arguments
(each field is a keyword of the same name), what the command line parses into (each field's metadata names its
option and help), and what the PNG stores (:meth:`PanoramaSettings.to_dict`). Every rule on a value is checked
here, once, with :class:`~syncguide.errors.SettingError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from syncguide.errors import SettingError
from syncguide.guidance.sync import SyncSchedule


def _setting(
    default: Any,
    help: str,
    option: str | None = None,
    low: float | None = None,
    high: float | None = None,
    layout: bool = False,
    choices: tuple[str, ...] | None = None,
):
    """A field with its command-line option (default ``--name-with-dashes``), help, bounds (or ``choices`` for a
    string), scope."""
    metadata = {"help": help, "option": option, "low": low, "high": high, "layout": layout, "choices": choices}
    return field(default=default, metadata=metadata)


SYNC_MODES = ("exact", "fast")
"""SyncDiffusion's gradient: exact, or fast (the model output held constant; see
:class:`~syncguide.sampling.hooks.SyncOptions`)."""

MICRO_CONDITIONING = ("window", "zeros", "canvas")
"""SDXL's per-window ``original_size`` / ``crops_coords_top_left`` / ``target_size`` conventions
(:mod:`syncguide.models.sdxl`)."""

MAX_SIDE = 32768
"""Largest height or width in pixels (refused before anything is allocated; 4x an 8K 360-degree panorama)."""


@dataclass(frozen=True)
class PanoramaSettings:
    """Sampling parameters of a panorama or layout, named as the pipeline's keyword arguments.

    Sizes are pixels; ``stride`` and ``window`` are latent pixels (8 px each for Stable Diffusion). None means
    "the model's default": one window high and six wide, the UNet's ``sample_size`` window, every step synced,
    ``view_batch_size`` windows per sync pass.
    """

    negative_prompt: str = _setting("", "negative prompt (default empty, as in the paper)")
    height: int | None = _setting(
        None, f"pixels, a multiple of the VAE scale, at most {MAX_SIDE} (default: one window)", low=1, high=MAX_SIDE
    )
    width: int | None = _setting(
        None, f"pixels, a multiple of the VAE scale, at most {MAX_SIDE} (default: 6 x height)", low=1, high=MAX_SIDE
    )
    num_inference_steps: int = _setting(
        50,
        "denoising steps, as many as the scheduler's training timesteps allow (999 for SD's DDIM)",
        option="--steps",
        low=1,
    )
    guidance_scale: float = _setting(7.5, "classifier-free guidance scale", option="--cfg", low=0)
    stride: int = _setting(16, "window offset in latent pixels (the paper: 16 = 128 px for SD)", low=1)
    window: int | None = _setting(None, "window size in latent pixels (default: the UNet's sample_size)", low=1)
    circular_padding: bool = _setting(False, "360-degree panorama: the right edge meets the left", option="--circular")
    eta: float = _setting(0.0, "DDIM eta (0: deterministic DDIM)", low=0)
    view_batch_size: int = _setting(1, "windows per model call", low=1)
    num_images_per_prompt: int = _setting(1, "images per prompt", low=1)
    sync_weight: float = _setting(20.0, "SyncDiffusion w0 (0: MultiDiffusion)", low=0)
    sync_decay: float = _setting(0.95, "sync weight decay per step: step i uses w0 * decay^i", low=0)
    sync_steps: int | None = _setting(None, "synchronise during the first N steps (default all)", low=0)
    sync_every: int = _setting(1, "synchronise every N-th step", low=1)
    sync_batch_size: int | None = _setting(None, "windows per gradient pass (default view_batch_size)", low=1)
    sync_checkpointing: bool = _setting(False, "gradient checkpointing in the sync pass (less memory)")
    sync_mode: str = _setting(
        "exact",
        "exact (gradient through the denoiser, the decoder and the loss) or fast (the model output held constant:"
        " no denoiser backward, one forward a step; see syncguide.sampling.hooks.SyncOptions)",
        choices=SYNC_MODES,
    )
    sync_loss_size: int | None = _setting(
        None, "resize the x0 images to this many px (longer side) before the sync loss (default: not resized)", low=8
    )
    bootstrap_fraction: float = _setting(
        0.2, "fraction of the steps with bootstrapping (layouts)", option="--bootstrap", low=0, high=1, layout=True
    )
    sync_regions: bool = _setting(False, "also sync each region towards its own anchor (layouts)", layout=True)
    true_cfg_scale: float = _setting(
        1.0, "FLUX: true classifier-free guidance with the negative prompt when > 1 (two passes a step)", low=0
    )
    max_sequence_length: int | None = _setting(
        None, "FLUX/SD3: T5 prompt tokens (default: the family's, 512 FLUX.1-dev, 256 schnell and SD3)", low=1, high=512
    )
    micro_conditioning: str = _setting(
        "window",
        "SDXL size/crop conditioning of each window: window (the canvas as original size, the window's offset as"
        " crop), zeros (each window a whole image: crop 0), canvas (the canvas size throughout, crop 0)",
        choices=MICRO_CONDITIONING,
    )

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            check_value(item, getattr(self, item.name))

    @classmethod
    def build(cls, base: PanoramaSettings | None = None, **options: Any) -> PanoramaSettings:
        """``base`` (default: the defaults) with ``options`` replaced; TypeError for an unknown name.

        ``circular`` is accepted as a deprecated alias of ``circular_padding`` (with a FutureWarning).
        """
        if "circular" in options:
            warnings.warn("circular is deprecated; use circular_padding", FutureWarning, stacklevel=3)
            options["circular_padding"] = options.pop("circular")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (settings are: {', '.join(sorted(known))})")
        return dataclasses.replace(base or cls(), **options)

    def sync_schedule(self) -> SyncSchedule:
        """SyncDiffusion's schedule of these settings."""
        return SyncSchedule(self.sync_weight, self.sync_decay, self.sync_steps, self.sync_every)

    @property
    def syncs(self) -> bool:
        """Whether any step is synchronised."""
        return self.sync_weight > 0 and self.sync_steps != 0

    def to_parameters(self, layout: bool = False) -> dict[str, Any]:
        """The settings as stored in a PNG: JSON values keyed by option name (``steps``, ``cfg``, ``circular``,
        ``sync_weight``, ...); the layout-only ones only if ``layout``."""
        chosen = [f for f in dataclasses.fields(self) if layout or not f.metadata["layout"]]
        return {option_name(f.name)[2:].replace("-", "_"): getattr(self, f.name) for f in chosen}


def check_value(item: dataclasses.Field, value: Any) -> None:
    """SettingError unless ``value`` fits field ``item``: its type, finite, within its bounds."""
    if value is None and item.default is None:
        return
    kind = type(item.default) if item.default is not None else (int if "int" in str(item.type) else float)
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingError(item.name, f"must be True or False; got {value!r}")
        return
    if kind is str:
        if not isinstance(value, str):
            raise SettingError(item.name, f"must be a string; got {value!r}")
        choices = item.metadata.get("choices")
        if choices and value not in choices:
            raise SettingError(item.name, f"must be one of {', '.join(choices)}; got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise SettingError(item.name, f"must be {'an integer' if kind is int else 'a number'}; got {value!r}")
    if not math.isfinite(value):
        raise SettingError(item.name, f"must be finite; got {value}")
    low, high = item.metadata["low"], item.metadata["high"]
    if low is not None and value < low:
        raise SettingError(item.name, f"must be >= {low}; got {value}")
    if high is not None and value > high:
        raise SettingError(item.name, f"must be <= {high}; got {value}")


def option_name(setting: str) -> str:
    """The command-line option of a :class:`PanoramaSettings` field (``num_inference_steps`` -> ``--steps``)."""
    for item in dataclasses.fields(PanoramaSettings):
        if item.name == setting:
            return item.metadata["option"] or "--" + setting.replace("_", "-")
    return "--" + setting.replace("_", "-")
