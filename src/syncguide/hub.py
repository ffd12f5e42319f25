"""Model specs: a local directory or a Hugging Face hub id, checked before anything loads.

A hub id that is not in the local Hugging Face cache must be downloaded. Offline (``HF_HUB_OFFLINE=1``), or when
the hub cannot be reached (a quick connection test, :data:`PROBE_TIMEOUT` seconds), that fails at once with one
:class:`~syncguide.errors.SettingError` instead of the hub client's retries with back-off.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from urllib.parse import urlparse

from syncguide.errors import SettingError
from syncguide.modelkind import DESCRIPTIONS, PANORAMA_KINDS, config_kind, expect_kind, index_kind

__all__ = ["HUB_ID", "PROBE_TIMEOUT", "check_hub", "check_model", "expect_cached", "hub_reachable", "offline"]

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""The form of a hub id (``org/name``)."""

PROBE_TIMEOUT = 3.0
"""Seconds the connection test to the hub may take before the hub counts as unreachable."""

TRUE = ("1", "on", "yes", "true")
PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def check_model(
    spec: str,
    setting: str = "model",
    kinds: Collection[str] | None = PANORAMA_KINDS,
    needs: str | None = None,
) -> None:
    """SettingError (naming ``setting``) unless ``spec`` is a diffusers pipeline directory or a hub id that can be
    had: in the Hugging Face cache, or downloadable (not offline, the hub reachable).

    ``kinds`` (see :mod:`syncguide.modelkind`): the kinds of model accepted (default: a panorama pipeline;
    None: any directory with a ``model_index.json``), checked from the files of a directory (or the cached
    ``model_index.json`` of a hub id) before any weight loads; ``needs`` words what is expected in the message.
    """
    path = Path(spec).expanduser()
    if path.exists():
        if kinds is not None:
            expect_kind(path, setting, kinds, needs)
        elif not (path / "model_index.json").is_file():
            raise SettingError(setting, f"{spec} is not a diffusers pipeline directory (no model_index.json)")
        return
    if not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise SettingError(setting, f"{spec} does not exist (give a local directory or a hub id like org/name)")
    cached = check_hub(spec, setting, "model_index.json")
    if cached is not None and kinds is not None:
        expect_cached(spec, cached, setting, kinds, needs)


def check_hub(spec: str, setting: str, filename: str | Sequence[str]) -> Path | None:
    """The cached ``filename`` (the first cached of several) of hub repo ``spec``, or None when none is cached but
    the repo can be downloaded; else SettingError naming ``setting``: offline, or the hub unreachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    for name in (filename,) if isinstance(filename, str) else filename:
        try:
            cached = try_to_load_from_cache(spec, name)
        except ValueError:  # not a valid repo id for the hub client
            rule = f"{spec} does not exist (give a local directory or a hub id org/name)"
            raise SettingError(setting, rule) from None
        if isinstance(cached, str):
            return Path(cached)
    where = f"{spec} is not a local directory and is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if offline():
        raise SettingError(
            setting, f"{where}; offline (HF_HUB_OFFLINE=1), so it cannot be downloaded: give a local directory"
        )
    reachable, reason = hub_reachable()
    if not reachable:
        raise SettingError(setting, f"{where}, and the hub cannot be reached ({reason}): give a local directory")
    return None


def offline() -> bool:
    """Whether the Hugging Face hub is switched off: ``HF_HUB_OFFLINE`` set now or when huggingface_hub loaded."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """``(reachable, reason)``: whether a TCP connection to the hub's endpoint (``HF_ENDPOINT``) opens within
    ``timeout`` seconds. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) it is assumed reachable."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    if any(os.environ.get(name) for name in PROXIES):
        return True, "behind a proxy"
    result: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as error:
            result.append(f"{host}: {error.strerror or error}")

    thread = threading.Thread(target=connect, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(timeout)
    if not result:
        return False, f"{host}: no answer within {timeout:g} s"
    return not result[0], result[0]


def expect_cached(spec: str, cached: Path, setting: str, kinds: Collection[str], needs: str | None = None) -> None:
    """SettingError unless the cached ``model_index.json`` or ``config.json`` of hub repo ``spec`` is of one of
    ``kinds`` (a cache entry that cannot be read is left to the loader to report)."""
    classify = index_kind if cached.name == "model_index.json" else config_kind
    try:
        kind, found = classify(json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if kind not in kinds:
        needs = needs or "expected " + " or ".join(DESCRIPTIONS[k] for k in kinds)
        raise SettingError(setting, f"{spec} is {found}; {needs}")
