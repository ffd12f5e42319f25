"""The one mapping from library setting names to command-line option names, and the one-line error it gives.

The library raises :class:`~syncguide.errors.SettingError` with the setting's name (``sync_weight``,
``num_inference_steps``); the command line reports it under the option that set it (``--sync-weight``,
``--steps``). The default is ``--`` and the name with dashes for underscores; :data:`OPTIONS` lists the rest.
"""

from __future__ import annotations

from syncguide.errors import SettingError

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
