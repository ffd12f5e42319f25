"""The one mapping from library setting names to command-line option names, and the one-line error it gives.

The library raises :class:`~syncguide.errors.SettingError` with the setting's name (``sync_weight``,
``num_inference_steps``); the command line reports it under the option that set it (``--sync-weight``,
``--steps``). The default is ``--`` and the name with dashes for underscores; :data:`OPTIONS` lists the rest.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any, TypeVar

from syncguide.errors import SettingError

T = TypeVar("T")

OPTIONS: dict[str, str] = {
    "num_inference_steps": "--steps",
    "guidance_scale": "--cfg",
    "circular_padding": "--circular",
    "panorama_dir": "PANORAMA_DIR",
    "manifest": "MANIFEST",
    "prompt": "PROMPT",
}
"""Settings whose option is not ``--`` + the name with dashes (positional arguments are named in capitals)."""


def option_name(setting: str) -> str:
    """The command-line option of library setting ``setting`` (``sync_weight`` -> ``--sync-weight``)."""
    return OPTIONS.get(setting, "--" + setting.replace("_", "-"))


def usage_message(error: SettingError) -> str:
    """``--option: rule``: the text of the one-line error a SettingError becomes."""
    return f"{option_name(error.setting)}: {error.rule}"


def settings_from(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """The settings dataclass ``cls`` with every field that ``args`` has an option for (its ``dest`` is the field's
    name), then ``values`` (converted or resolved fields). ``args`` itself goes no further than this."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return cls(**{**given, **values})


def command_line() -> str:
    """The command as typed: ``syncguide`` and this process's arguments (recorded in reports)."""
    return " ".join(["syncguide", *sys.argv[1:]])
