"""What an evaluation reads: panoramas with their stored parameters, reference images, prompt lists.

Bad inputs raise :class:`~syncguide.errors.SettingError` naming the setting that gave them (``panorama_dir``,
``reference``, ``prompts``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from syncguide.errors import SettingError
from syncguide.images import load_images as load_images  # the one image-file loader ([0, 1] by default)
from syncguide.pngmeta import PARAMETERS_KEY, read_parameters


@dataclass(frozen=True)
class Panorama:
    """One panorama file with the parameters ``syncguide panorama`` stored in it."""

    path: Path
    parameters: dict[str, Any]

    @property
    def prompt(self) -> str:
        return self.parameters["prompt"]

    @property
    def method(self) -> str:
        """``MultiDiffusion`` (or SyncDiffusion at weight 0), else ``SyncDiffusion w=W``."""
        return method_label(self.parameters)

    @property
    def sync_weight(self) -> float:
        return sync_weight(self.parameters)


def sync_weight(parameters: dict[str, Any]) -> float:
    """The effective SyncDiffusion w0 of a panorama's parameters (0 for MultiDiffusion)."""
    if parameters.get("method") != "syncdiffusion":
        return 0.0
    return float(parameters.get("sync_weight") or 0.0)


def method_label(parameters: dict[str, Any]) -> str:
    """A method's display name: ``MultiDiffusion`` for w0 = 0, ``SyncDiffusion w=20`` otherwise."""
    weight = sync_weight(parameters)
    return "MultiDiffusion" if weight == 0 else f"SyncDiffusion w={weight:g}"


def list_pngs(directory: Path, setting: str) -> list[Path]:
    """The ``.png`` files directly in ``directory``, sorted; SettingError (naming ``setting``) if there are none."""
    if not directory.is_dir():
        raise SettingError(setting, f"{directory} is not a directory")
    files = sorted(p for p in directory.glob("*.png") if not p.name.startswith("."))
    if not files:
        raise SettingError(setting, f"no .png files in {directory}")
    return files


def check_one_size(files: list[Path], setting: str) -> tuple[int, int]:
    """The common ``(height, width)`` of image ``files``; SettingError naming ``setting`` if sizes are mixed."""
    sizes: Counter = Counter()
    examples: dict[tuple[int, int], Path] = {}
    for path in files:
        with Image.open(path) as image:
            size = (image.height, image.width)
        sizes[size] += 1
        examples.setdefault(size, path)
    if len(sizes) > 1:
        found = ", ".join(f"{h}x{w} ({n}, e.g. {examples[(h, w)].name})" for (h, w), n in sizes.most_common())
        raise SettingError(setting, f"images must all have one size (height x width); found {found}")
    return next(iter(sizes))


def read_panoramas(directory: Path, prompts: list[str] | None = None) -> list[Panorama]:
    """Panoramas in ``directory`` (one size, each with stored parameters), restricted to ``prompts`` if given.

    SettingError (``panorama_dir``, ``prompts``) for an empty or mixed-size directory, a PNG without parameters,
    or a listed prompt with no panorama."""
    files = list_pngs(directory, "panorama_dir")
    check_one_size(files, "panorama_dir")
    panoramas = []
    for path in files:
        try:
            panoramas.append(Panorama(path, read_parameters(path)))
        except (KeyError, ValueError):
            raise SettingError(
                "panorama_dir", f"{path.name} has no '{PARAMETERS_KEY}' (write panoramas with syncguide panorama)"
            ) from None
    if prompts is not None:
        missing = sorted(set(prompts) - {p.prompt for p in panoramas})
        if missing:
            raise SettingError("prompts", f"no panorama in {directory} has the prompt {missing[0]!r}")
        panoramas = [p for p in panoramas if p.prompt in set(prompts)]
    return panoramas


def read_prompts(path: Path) -> list[str]:
    """Non-empty lines of a prompt file; SettingError (``prompts``) if it is unreadable or has none."""
    try:
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as error:
        raise SettingError("prompts", f"cannot read {path}: {error.strerror}") from None
    if not prompts:
        raise SettingError("prompts", f"{path} has no prompts (one per line)")
    return prompts
