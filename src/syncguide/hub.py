"""Model specs: a local diffusers pipeline directory or a Hugging Face hub id, checked before anything loads."""

from __future__ import annotations

import re
from pathlib import Path

from syncguide.errors import SettingError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""The form of a hub id (``org/name``)."""


def check_model(spec: str, setting: str = "model") -> None:
    """SettingError (naming ``setting``) unless ``spec`` is a diffusers pipeline directory or looks like a hub id."""
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise SettingError(setting, f"{spec} is not a diffusers pipeline directory (no model_index.json)")
    elif not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise SettingError(setting, f"{spec} does not exist (give a local directory or a hub id like org/name)")
