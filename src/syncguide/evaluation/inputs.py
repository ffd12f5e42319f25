"""What an evaluation reads: panoramas with their stored parameters, reference images, prompt lists.

Every image is decoded once while checking (a truncated or unreadable file is refused before any work). Bad
inputs raise :class:`~syncguide.errors.SettingError` naming the setting that gave them (``panorama_dir``,
``reference``, ``prompts``) and, in the rule, the file and what is wrong with it.

Images written by ``syncguide layout`` are evaluated too: their parameters hold a ``background`` prompt and
``regions`` instead of a ``prompt``; the background prompt is their prompt (CLIP-S scores the random crop against
it, ``prompts`` selects by it) and their method is labelled ``... (layout)``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from syncguide.errors import SettingError
from syncguide.images import load_images as load_images  # the one image-file loader ([0, 1] by default)
from syncguide.images import open_image
from syncguide.pngmeta import PARAMETERS_KEY, read_parameters

LAYOUT_SUFFIX = " (layout)"
"""Appended to the method label of images written by ``syncguide layout``."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
"""What PIL raises for a missing, unreadable, truncated or corrupt file (and :func:`open_image` for too many
pixels)."""


@dataclass(frozen=True)
class Panorama:
    """One panorama file with the parameters ``syncguide panorama`` (or ``syncguide layout``) stored in it."""

    path: Path
    parameters: dict[str, Any]

    @property
    def is_layout(self) -> bool:
        """Written by ``syncguide layout``: a background prompt and regions, no ``prompt``."""
        return is_layout(self.parameters)

    @property
    def prompt(self) -> str:
        """The prompt CLIP-S scores against and ``prompts`` selects by (a layout's background prompt)."""
        return self.parameters["background"] if self.is_layout else self.parameters["prompt"]

    @property
    def method(self) -> str:
        """``MultiDiffusion`` (or SyncDiffusion at weight 0), else ``SyncDiffusion w=W``; `` (layout)`` added for
        layout images."""
        return method_label(self.parameters)

    @property
    def sync_weight(self) -> float:
        return sync_weight(self.parameters)


def is_layout(parameters: dict[str, Any]) -> bool:
    """Parameters written by ``syncguide layout`` (``background`` and ``regions``, no ``prompt``)."""
    return "prompt" not in parameters and "background" in parameters and "regions" in parameters


def sync_weight(parameters: dict[str, Any]) -> float:
    """The effective SyncDiffusion w0 of a panorama's parameters (0 for MultiDiffusion)."""
    if parameters.get("method") != "syncdiffusion":
        return 0.0
    return float(parameters.get("sync_weight") or 0.0)


def method_label(parameters: dict[str, Any]) -> str:
    """A method's display name: ``MultiDiffusion`` for w0 = 0, ``SyncDiffusion w=20`` otherwise (with
    :data:`LAYOUT_SUFFIX` for layout images)."""
    weight = sync_weight(parameters)
    label = "MultiDiffusion" if weight == 0 else f"SyncDiffusion w={weight:g}"
    return label + LAYOUT_SUFFIX if is_layout(parameters) else label


def list_pngs(directory: Path, setting: str) -> list[Path]:
    """The ``.png`` files directly in ``directory``, sorted; SettingError (naming ``setting``) if there are none."""
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise SettingError(setting, f"{directory} {what}")
    try:
        files = sorted(p for p in directory.glob("*.png") if not p.name.startswith(".") and not p.is_dir())
    except OSError as error:
        raise SettingError(setting, f"cannot list {directory}: {error.strerror or error}") from None
    if not files:
        raise SettingError(setting, f"no .png files in {directory}")
    return files


def image_size(path: Path, setting: str) -> tuple[int, int]:
    """``(height, width)`` of the image file ``path``, decoded in full (so that a truncated file is found now).

    SettingError naming ``setting`` and the file for a missing, unreadable, truncated, corrupt or too large one."""
    try:
        with open_image(path, "RGB") as image:
            return image.height, image.width
    except _DECODE_ERRORS as error:
        raise SettingError(setting, unreadable(path, error)) from None


def unreadable(path: Path, error: BaseException) -> str:
    """The rule for an image file that PIL cannot decode: ``PATH is not a readable image (why)``."""
    if isinstance(error, UnidentifiedImageError):
        return f"{path} is not a readable image (not an image file PIL knows)"
    if isinstance(error, ValueError):  # open_image's pixel cap: its message names the file
        return str(error)
    if isinstance(error, OSError) and error.strerror:  # missing, a directory, no permission
        return f"cannot read {path}: {error.strerror}"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    why = "truncated" if "truncated" in text.lower() else f"corrupt: {text}"
    return f"{path} is not a readable image ({why})"


def check_one_size(files: list[Path], setting: str) -> tuple[int, int]:
    """The common ``(height, width)`` of image ``files`` (each decoded: :func:`image_size`); SettingError naming
    ``setting`` if one is unreadable or the sizes are mixed."""
    sizes: Counter = Counter()
    examples: dict[tuple[int, int], Path] = {}
    for path in files:
        size = image_size(path, setting)
        sizes[size] += 1
        examples.setdefault(size, path)
    if len(sizes) > 1:
        found = ", ".join(f"{h}x{w} ({n}, e.g. {examples[(h, w)].name})" for (h, w), n in sizes.most_common())
        raise SettingError(setting, f"images must all have one size (height x width); found {found}")
    return next(iter(sizes))


def panorama_parameters(path: Path) -> dict[str, Any]:
    """The parameters stored in the panorama ``path``, checked: a JSON object with a string ``prompt`` (or, from
    ``syncguide layout``, a string ``background`` and a list of ``regions``), a string ``method`` and ``model``
    and a finite ``sync_weight`` where given. SettingError (``panorama_dir``) naming the file otherwise."""
    where = "write panoramas with syncguide panorama or syncguide layout"
    try:
        parameters = read_parameters(path)
    except KeyError:
        raise SettingError("panorama_dir", f"{path} has no '{PARAMETERS_KEY}' ({where})") from None
    except ValueError as error:
        why = str(error).strip().splitlines()[0] if str(error).strip() else "unparseable"
        raise SettingError("panorama_dir", f"{path}: its stored parameters cannot be read ({why}; {where})") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise SettingError("panorama_dir", unreadable(path, error)) from None
    if not isinstance(parameters, dict):
        kind = type(parameters).__name__
        raise SettingError("panorama_dir", f"{path}: its stored parameters are a JSON {kind}, not an object")
    problem = parameter_problem(parameters)
    if problem:
        raise SettingError("panorama_dir", f"{path}: {problem} ({where})")
    return parameters


def parameter_problem(parameters: dict[str, Any]) -> str | None:
    """What is wrong with a panorama's parameters for evaluation, or None."""
    if is_layout(parameters):
        if not isinstance(parameters["background"], str):
            return f"its 'background' prompt must be a string; got {parameters['background']!r}"
    elif "prompt" not in parameters:
        return "its parameters have no 'prompt'"
    elif not isinstance(parameters["prompt"], str):
        return f"its 'prompt' must be a string; got {parameters['prompt']!r}"
    for key in ("method", "model"):
        if key in parameters and not isinstance(parameters[key], str):
            return f"its '{key}' must be a string; got {parameters[key]!r}"
    weight = parameters.get("sync_weight")
    if parameters.get("method") == "syncdiffusion" and weight is not None and not _finite_number(weight):
        return f"its 'sync_weight' must be a finite number; got {weight!r}"
    return None


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def read_panorama_dir(directory: Path, prompts: list[str] | None = None) -> tuple[list[Panorama], tuple[int, int]]:
    """The panoramas in ``directory`` (:func:`read_panoramas`) and their common ``(height, width)``."""
    files = list_pngs(directory, "panorama_dir")
    size = check_one_size(files, "panorama_dir")
    panoramas = [Panorama(path, panorama_parameters(path)) for path in files]
    if prompts is not None:
        missing = sorted(set(prompts) - {p.prompt for p in panoramas})
        if missing:
            raise SettingError("prompts", f"no panorama in {directory} has the prompt {missing[0]!r}")
        panoramas = [p for p in panoramas if p.prompt in set(prompts)]
    return panoramas, size


def read_panoramas(directory: Path, prompts: list[str] | None = None) -> list[Panorama]:
    """Panoramas in ``directory`` (one size, each readable with stored parameters), restricted to ``prompts`` if
    given (a layout image by its background prompt).

    SettingError (``panorama_dir``, ``prompts``) for an empty or mixed-size directory, an unreadable image, a PNG
    without usable parameters (:func:`panorama_parameters`), or a listed prompt with no panorama."""
    return read_panorama_dir(directory, prompts)[0]


def read_prompts(path: Path) -> list[str]:
    """Non-empty lines (stripped) of a UTF-8 prompt file, one prompt per line (a byte-order mark is ignored).

    SettingError (``prompts``) if it is unreadable, not UTF-8 text (or holds NUL bytes: binary), or has no
    prompts."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SettingError("prompts", f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        rule = f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); one prompt a line"
        raise SettingError("prompts", rule) from None
    if "\x00" in text:
        raise SettingError("prompts", f"{path} is binary (a NUL byte at offset {data.find(0)}); one prompt a line")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise SettingError("prompts", f"{path} has no prompts (one per line)")
    return prompts
