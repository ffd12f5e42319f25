"""PNG files with generation parameters in a text chunk (JSON), written atomically.

The chunk is ``parameters``, the key other diffusion tools use for generation settings. ``syncguide eval`` reads
what ``syncguide panorama`` wrote through :func:`read_parameters`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from syncguide.atomic import write_atomic

PARAMETERS_KEY = "parameters"  # the text chunk other diffusion tools use for generation settings


def png_bytes(image: Image.Image, parameters: dict[str, Any]) -> bytes:
    """The PNG encoding of ``image`` with ``parameters`` as sorted-key JSON in the ``parameters`` text chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, json.dumps(parameters, sort_keys=True, allow_nan=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(image: Image.Image, path: Path, parameters: dict[str, Any], overwrite: bool) -> bool:
    """Write ``image`` with ``parameters`` to ``path`` atomically (:func:`syncguide.atomic.write_atomic`).

    Without ``overwrite`` an existing file is never replaced, even one that appeared while we worked; returns
    whether the file was written.
    """
    return write_atomic(path, png_bytes(image, parameters), overwrite)


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The generation parameters stored in a PNG written by :func:`write_png`.

    KeyError if the PNG has no ``parameters`` chunk, ValueError if it is not JSON."""
    with Image.open(path) as image:
        return json.loads(image.text[PARAMETERS_KEY])
