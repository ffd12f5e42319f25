"""PNG files with their generation settings in text chunks, written atomically.

Two chunks, as AUTOMATIC1111-compatible tools expect:

- ``parameters`` holds the AUTOMATIC1111 text form (prompt, ``Negative prompt: ...``, then one line
  ``Steps: 50, Sampler: DDIM, CFG scale: 7.5, Seed: 0, Size: 3072x512, Model: ..., Sync weight: 20, ...``), which
  AUTOMATIC1111's PNG Info, Civitai and ComfyUI's readers parse;
- ``syncguide`` holds every setting as sorted-key JSON (exact types and values): what :func:`read_parameters`
  returns and what ``syncguide info``, ``--from FILE.png`` and ``syncguide eval`` read.

:func:`read_parameters` also reads PNGs written before the split (JSON under ``parameters``) and other tools' PNGs
(the AUTOMATIC1111 text, parsed by :func:`parse_a1111`).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from syncguide.atomic import write_atomic

PARAMETERS_KEY = "parameters"  # AUTOMATIC1111's chunk: its text form
JSON_KEY = "syncguide"  # ours: the full settings as JSON

SAMPLERS = {
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "dpm++": "DPM++ 2M",
    "unipc": "UniPC",
    "pndm": "PLMS",
    "flow-euler": "Euler",
}
"""Our scheduler names and AUTOMATIC1111's sampler names for them."""

# AUTOMATIC1111's labels for the settings it knows, in its order; every other setting follows as "Sync weight: 20".
LABELS = {"steps": "Steps", "scheduler": "Sampler", "cfg": "CFG scale", "seed": "Seed", "model": "Model"}
PROMPT_KEYS = ("prompt", "background")  # a layout's main prompt is its background prompt
NOT_LISTED = frozenset({*PROMPT_KEYS, "negative_prompt", "width", "height", *LABELS})
# AUTOMATIC1111's pattern for one "Label: value" pair (modules/infotext_utils.py, re_param), one-letter labels too.
PAIR = re.compile(r'\s*(\w[\w \-/+]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def png_bytes(image: Image.Image, parameters: dict[str, Any]) -> bytes:
    """The PNG encoding of ``image`` with ``parameters`` in both chunks (:func:`a1111_text` and JSON).

    ValueError if a value is NaN or infinite (not JSON)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_text(parameters))
    info.add_text(JSON_KEY, json.dumps(parameters, sort_keys=True, allow_nan=False))
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
    """The generation settings stored in a PNG: our JSON chunk, else a JSON ``parameters`` chunk (files written
    before the split), else the AUTOMATIC1111 text of another tool (:func:`parse_a1111`).

    KeyError if the PNG has neither chunk, ValueError if the chunk cannot be parsed (or is JSON but not an
    object); OSError from Pillow if ``path`` is not a readable image."""
    with Image.open(path) as image:
        chunks = dict(getattr(image, "text", {}))
    if JSON_KEY in chunks:
        return _json_object(chunks[JSON_KEY])
    if PARAMETERS_KEY not in chunks:
        raise KeyError(PARAMETERS_KEY)
    text = chunks[PARAMETERS_KEY]
    if text.lstrip().startswith("{"):
        return _json_object(text)
    return parse_a1111(text)


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)  # json.JSONDecodeError is a ValueError
    if not isinstance(value, dict):
        raise ValueError(f"the stored settings are JSON but not an object: {type(value).__name__}")
    return value


def a1111_text(parameters: dict[str, Any]) -> str:
    """The AUTOMATIC1111 ``parameters`` text of our settings dict (keys as ``syncguide`` stores them).

    The prompt (a layout's background prompt), ``Negative prompt: ...`` if any, and one line of ``Label: value``
    pairs: A1111's labels for steps, sampler, CFG scale, seed, size and model, then every other setting that is
    not None with its key as the label (``sync_weight`` -> ``Sync weight``). Values with commas, colons, quotes
    or newlines, and lists, are JSON-quoted as A1111 quotes them."""
    prompt = next((parameters[k] for k in PROMPT_KEYS if k in parameters), "")
    lines = [str(prompt)]
    if parameters.get("negative_prompt"):
        lines.append(f"Negative prompt: {parameters['negative_prompt']}")
    pairs = []
    for key, label in LABELS.items():
        if parameters.get(key) is not None:
            value = SAMPLERS.get(parameters[key], parameters[key]) if key == "scheduler" else parameters[key]
            pairs.append((label, value))
        if key == "seed" and parameters.get("width") and parameters.get("height"):
            pairs.append(("Size", f"{parameters['width']}x{parameters['height']}"))
    pairs += [(_label(k), v) for k, v in sorted(parameters.items()) if k not in NOT_LISTED and v is not None]
    lines.append(", ".join(f"{label}: {_quote(value)}" for label, value in pairs))
    return "\n".join(lines)


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _quote(value: Any) -> str:
    if isinstance(value, str):  # plain only where it cannot be read back as anything else (a number, null, [1])
        plain = not any(c in value for c in ',:"\n') and value == value.strip() and not _is_json(value)
        if value[:1] in ("[", "{", '"') and _is_json(value):  # quoted twice: once-quoted, "[1]" is the list [1]
            return json.dumps(json.dumps(value))
        return value if plain else json.dumps(value)
    if isinstance(value, list | dict):  # quoted as a string: A1111's pattern allows no comma outside quotes
        return json.dumps(json.dumps(value, allow_nan=False))
    return json.dumps(value, allow_nan=False)


def _is_json(text: str) -> bool:
    """Whether ``text`` parses as JSON (or as a float: ``nan``, ``1_0``), so that unquoted it would read back as
    another value than the string."""
    for parse in (json.loads, float):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def parse_a1111(text: str) -> dict[str, Any]:
    """The settings in an AUTOMATIC1111 ``parameters`` text, keyed as ``syncguide`` stores them.

    ``prompt``, ``negative_prompt``, ``steps``, ``cfg``, ``seed``, ``width``/``height`` (from ``Size``), ``model``,
    ``scheduler`` (our name where we have that sampler, else ``sampler``: A1111's name), and every other pair
    under its label in snake case, JSON values decoded. ValueError if the last line has no ``Label: value``."""
    lines = text.rstrip("\n").split("\n")
    pairs = PAIR.findall(lines[-1]) if lines else []
    if not pairs:
        raise ValueError("no 'Label: value' settings line (not an AUTOMATIC1111 parameters text)")
    result: dict[str, Any] = {}
    prompt, negative, in_negative = [], [], False
    for line in lines[:-1]:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    result["prompt"] = "\n".join(prompt)
    if in_negative:
        result["negative_prompt"] = "\n".join(negative)
    keys = {label: key for key, label in LABELS.items()}
    samplers = {name: ours for ours, name in SAMPLERS.items()}
    for label, raw in pairs:
        value = _unquote(raw.strip())
        if label == "Size" and isinstance(value, str) and re.fullmatch(r"\d+x\d+", value):
            result["width"], result["height"] = (int(v) for v in value.split("x"))
        elif label == "Sampler":
            result["scheduler" if value in samplers else "sampler"] = samplers.get(value, value)
        else:
            result[keys.get(label, label.strip().lower().replace(" ", "_").replace("-", "_"))] = value
    return result


def _unquote(raw: str) -> Any:
    if raw.startswith('"'):
        text = json.loads(raw)
        if text[:1] in ("[", "{", '"'):  # a list or object quoted by _quote, or a string like "[1]" quoted twice
            try:
                inner = json.loads(text)
            except ValueError:
                return text
            if text[:1] == '"':  # a string quoted twice
                return inner if isinstance(inner, str) else text
            return inner
        return text
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, int | float | bool | list | dict) or value is None else raw
