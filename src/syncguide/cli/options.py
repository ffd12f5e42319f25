"""The one mapping from library setting names to command-line option names, and the one-line error it gives.

The library raises :class:`~syncguide.errors.SettingError` with the setting's name (``sync_weight``,
``num_inference_steps``); the command line reports it under the option that set it (``--sync-weight``,
``--steps``), as :func:`syncguide.settings.option_name` maps them, or under a positional argument's metavar.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any, TypeVar

from syncguide import settings
from syncguide.errors import NonFiniteError, OutOfMemory, SettingError, UsageError

T = TypeVar("T")

POSITIONALS: dict[str, str] = {
    "panorama_dir": "PANORAMA_DIR",
    "manifest": "MANIFEST",
    "prompt": "PROMPT",
}
"""Settings set by a positional argument, named by its metavar (in capitals)."""
OPTIONS: dict[str, str] = {"parallel": "--window-parallel"}
"""Library keywords whose option is not named after them."""


def option_name(setting: str) -> str:
    """The command-line name of library setting ``setting``: a positional's metavar (:data:`POSITIONALS`), else
    :func:`syncguide.settings.option_name` (``num_inference_steps`` -> ``--steps``, ``sync_weight`` ->
    ``--sync-weight``)."""
    return POSITIONALS.get(setting) or OPTIONS.get(setting) or settings.option_name(setting)


def key_option(key: str) -> str:
    """The option of a stored-parameter / form key (``sync_weight`` -> ``--sync-weight``, ``steps`` -> ``--steps``):
    keys are option names with underscores (:meth:`syncguide.settings.PanoramaSettings.to_parameters`)."""
    return "--" + key.replace("_", "-")


BAD_INPUT = (OutOfMemory, UsageError, SettingError, NonFiniteError)
"""The errors that are bad input (one line, exit status 2), not bugs: :func:`error_message` has their lines."""


def usage_message(error: SettingError) -> str:
    """``--option: rule``: the text of the one-line error a SettingError becomes."""
    return f"{option_name(error.setting)}: {error.rule}"


def error_message(error: BaseException) -> str | None:
    """The one line the command line prints after ``error:`` for bad input (UsageError, SettingError mapped to its
    option, OutOfMemory, NonFiniteError); None for anything else (a bug, not bad input)."""
    if isinstance(error, OutOfMemory):
        return error.message(option_name)
    if isinstance(error, SettingError):
        return usage_message(error)
    if isinstance(error, BAD_INPUT):
        return str(error)
    return None


def settings_from(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """The settings dataclass ``cls`` with every field that ``args`` has an option for (its ``dest`` is the field's
    name), then ``values`` (converted or resolved fields). ``args`` itself goes no further than this."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return cls(**{**given, **values})


def check_ranges(args: argparse.Namespace, ranges: tuple[tuple[str, int, int | None], ...]) -> None:
    """UsageError ``--option: must be in [low, high]`` (or ``>= low``) for the first integer option of ``args``
    outside its range; ``ranges`` holds ``(dest, low, high or None)``."""
    for dest, low, high in ranges:
        value = getattr(args, dest)
        if value < low or (high is not None and value > high):
            rule = f"must be >= {low}" if high is None else f"must be in [{low}, {high:,}]"
            raise UsageError(f"--{dest.replace('_', '-')}: {rule}; got {value}")


def command_line() -> str:
    """The command as typed: ``syncguide`` and this process's arguments (recorded in reports)."""
    return " ".join(["syncguide", *sys.argv[1:]])


MAX_SEED = 2**64 - 1
"""Seeds are what ``torch.Generator.manual_seed`` takes without wrapping: 0 .. 2^64 - 1."""


def seed(text: str) -> int:
    """argparse type of ``--seed``: an integer in [0, :data:`MAX_SEED`] (else argparse's one-line error)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^64 - 1]; got {text!r}")
    return value
