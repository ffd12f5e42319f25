"""The Gradio page: Panorama, Layout, SDG and PNG Info tabs over a :class:`~syncguide.app.service.Service`.

Each generate button is a scripting endpoint too (``api_name`` ``panorama``, ``layout``, ``generate``) whose
parameters are named like the command line's options and start at its defaults. Its outputs: the PNG file (the
bytes the command line writes, parameters in the text chunk), the image shown, the last preview, the
parameters. The handlers are generators: live previews and progress while the run's thread works, and Gradio's
cancel closes them at their next yield, which cancels the run at the end of its step.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from syncguide.app.runner import Cancelled
from syncguide.app.service import REGIONS, Service
from syncguide.cli.options import error_message
from syncguide.schedulers import FLOW_SCHEDULERS, SCHEDULERS

log = logging.getLogger("syncguide.app")
SEED_MAX = 2**32 - 1  # the dice's range (any 0 .. 2^64 - 1 may be typed)
THEME_FONTS = {"font": ["ui-sans-serif", "system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}


def build(service: Service) -> gr.Blocks:
    """The app's page; ``service`` runs its requests."""
    with gr.Blocks(title="syncguide") as page:
        gr.Markdown("# syncguide\nCoherent panoramas (SyncDiffusion), layouts and semantic guidance (SDG).")
        with gr.Tabs() as tabs:
            with gr.Tab("Panorama", id="panorama"):
                pano = _generate_tab(service, "panorama")
            with gr.Tab("Layout", id="layout"):
                lay = _generate_tab(service, "layout")
            with gr.Tab("SDG", id="generate"):
                sdg = _generate_tab(service, "generate")
            with gr.Tab("PNG Info", id="info"):
                _info_tab(service, tabs, {"panorama": pano, "layout": lay, "generate": sdg})
    return page


def _generate_tab(service: Service, command: str) -> dict[str, Any]:
    """One generation tab: its form (components by parameter name), buttons and outputs; the form."""
    defaults = service.defaults(command)
    form = _sdg_form(service, defaults) if command == "generate" else _panorama_form(service, command, defaults)
    with gr.Row():
        go = gr.Button("Generate", variant="primary", elem_id=f"{command}-generate")
        stop = gr.Button("Cancel", variant="stop", elem_id=f"{command}-cancel")
    with gr.Row():
        if command == "generate":
            shown = gr.Gallery(label="samples", columns=4, elem_id=f"{command}-result")
            preview = gr.Image(label="preview", visible=False)
        else:
            preview = gr.Image(label="preview (x0 prediction)", type="pil", elem_id=f"{command}-preview")
            shown = gr.Image(label="result", type="filepath", format="png", elem_id=f"{command}-result")
    files = gr.File(label="PNG (parameters in its text chunk)", file_count="multiple", elem_id=f"{command}-file")
    params = gr.JSON(label="parameters", elem_id=f"{command}-parameters")
    names = list(form)
    event = go.click(
        _handler(service, command, names),
        inputs=[form[n] for n in names],
        outputs=[files, shown, preview, params],
        api_name=command,
        concurrency_id="sdg-model" if command == "generate" else "panorama-model",
        concurrency_limit=1,
        show_progress_on=[shown],
    )
    stop.click(None, cancels=[event], api_visibility="private")
    return form


def _number(label: str, value: Any, name: str, **kwargs: Any) -> gr.Number:
    return gr.Number(label=label, value=value, elem_id=name, **kwargs)


def _panorama_form(service: Service, command: str, d: dict[str, Any]) -> dict[str, Any]:
    """The panorama / layout form (layout: background, regions, bootstrapping, sync-regions)."""
    geometry = service.geometry
    pixels, step = geometry.window * geometry.scale, geometry.scale
    limit = max(service.limits.max_width, pixels)
    form: dict[str, Any] = {}
    if command == "layout":
        form["background"] = gr.Textbox(label="background prompt", elem_id="background")
    else:
        form["prompt"] = gr.Textbox(label="prompt", elem_id="prompt")
    form["negative_prompt"] = gr.Textbox(label="negative prompt", value=d["negative_prompt"])
    with gr.Row():
        form["width"] = gr.Slider(pixels, limit, value=d["width"], step=step, label="width", elem_id="width")
        form["height"] = gr.Slider(pixels, limit, value=d["height"], step=step, label="height", elem_id="height")
    with gr.Row():
        form["steps"] = gr.Slider(1, service.limits.max_steps, value=d["steps"], step=1, label="steps")
        form["cfg"] = gr.Slider(0, 30, value=d["cfg"], step=0.5, label="CFG scale")
        form["stride"] = gr.Slider(1, geometry.window, value=d["stride"], step=1, label="stride (latent pixels)")
    with gr.Row():
        form["method"] = gr.Radio(["syncdiffusion", "multidiffusion"], value=d["method"], label="method")
        schedulers = list(FLOW_SCHEDULERS if geometry.scheduler_name in FLOW_SCHEDULERS else SCHEDULERS)
        form["scheduler"] = gr.Dropdown(schedulers, value=d["scheduler"], label="scheduler")
        form["seed"] = _number("seed", d["seed"], f"{command}-seed", precision=0, minimum=0)
        dice = gr.Button("random seed", scale=0, min_width=80, elem_id=f"{command}-dice")
        dice.click(lambda: random.randint(0, SEED_MAX), outputs=form["seed"], api_visibility="private")
    with gr.Accordion("SyncDiffusion", open=False):
        with gr.Row():
            form["sync_weight"] = _number("sync weight", d["sync_weight"], f"{command}-sync-weight", minimum=0)
            form["sync_decay"] = _number("sync decay", d["sync_decay"], f"{command}-sync-decay", minimum=0)
            form["sync_steps"] = _number("sync steps", d["sync_steps"], f"{command}-sync-steps", precision=0)
            form["sync_every"] = _number("sync every", d["sync_every"], f"{command}-sync-every", precision=0)
        with gr.Row():
            form["sync_mode"] = gr.Radio(["exact", "fast"], value=d["sync_mode"], label="sync mode")
            form["sync_loss_size"] = _number("sync loss size (px)", d["sync_loss_size"], f"{command}-loss-size")
            form["circular"] = gr.Checkbox(value=d["circular"], label="360-degree wrap")
    if command == "layout":
        _layout_fields(form, d)
    _guidance_fields(form, command)
    form["preview_every"] = gr.Slider(1, 50, value=5, step=1, label="preview every (steps)")
    return form


def _layout_fields(form: dict[str, Any], d: dict[str, Any]) -> None:
    with gr.Accordion("Regions", open=True):
        gr.Markdown("A box is `X0,Y0,X1,Y1` in fractions of the canvas (0,0 top left); or draw / upload a mask.")
        for k in range(1, REGIONS + 1):
            with gr.Row():
                form[f"region{k}_prompt"] = gr.Textbox(label=f"region {k} prompt", elem_id=f"region{k}-prompt")
                form[f"region{k}_box"] = gr.Textbox(label=f"region {k} box", elem_id=f"region{k}-box")
                form[f"region{k}_mask"] = gr.ImageEditor(
                    label=f"region {k} mask (white = inside)", type="filepath", height=160
                )
        with gr.Row():
            form["bootstrap"] = _number("bootstrapping (fraction of steps)", d["bootstrap"], "bootstrap", minimum=0)
            form["sync_regions"] = gr.Checkbox(value=d["sync_regions"], label="sync regions")


def _guidance_fields(form: dict[str, Any], command: str) -> None:
    with gr.Accordion("Semantic guidance (SDG)", open=command == "generate"):
        form["text"] = gr.Textbox(label="text guidance", elem_id=f"{command}-text")
        with gr.Row():
            form["content"] = gr.Image(label="content image", type="filepath")
            form["style"] = gr.Image(label="style image", type="filepath")
        with gr.Row():
            form["text_weight"] = _number("text weight (default: the model's)", None, f"{command}-text-weight")
            form["image_weight"] = _number("content weight", None, f"{command}-image-weight")
            form["style_weight"] = _number("style weight", None, f"{command}-style-weight")


def _sdg_form(service: Service, d: dict[str, Any]) -> dict[str, Any]:
    """The SDG form: guidance, then the sampler of the unconditional model."""
    gr.Markdown(f"Unconditional model: {service.sdg_model or 'the bundled demo DDPM'}.")
    form: dict[str, Any] = {}
    _guidance_fields(form, "generate")
    with gr.Row():
        limits = service.limits
        form["n"] = gr.Slider(1, limits.max_samples, value=min(d["n"], limits.max_samples), step=1, label="samples")
        form["steps"] = gr.Slider(1, limits.max_steps, value=min(d["steps"], limits.max_steps), step=1, label="steps")
        form["scheduler"] = gr.Dropdown(["ddpm", "ddim"], value=d["scheduler"], label="scheduler")
        form["eta"] = _number("DDIM eta", d["eta"], "generate-eta", minimum=0)
        form["seed"] = _number("seed", d["seed"], "generate-seed", precision=0, minimum=0)
    return form


def _handler(service: Service, command: str, names: list[str]) -> Callable[..., Iterator[tuple]]:
    """The generator Gradio calls with the form's values (as positional arguments, in ``names`` order)."""

    def handle(*values: Any) -> Iterator[tuple]:
        # Gradio passes the form's values and then, where the signature below has it, its progress tracker
        progress = values[-1] if len(values) > len(names) else gr.Progress()
        request = {n: _plain(v) for n, v in zip(names, values[: len(names)], strict=True)}
        try:
            run = service.start(command, request)
        except Exception as error:
            raise _page_error(error) from None
        skip, preview = gr.skip(), gr.skip()
        try:
            for event in run.iterate():
                if event.kind == "progress":
                    progress((event.step, event.total), desc=command)
                elif event.kind == "preview":
                    preview = event.images[0]
                    yield skip, skip, preview, skip
                elif event.kind == "error":
                    if isinstance(event.error, Cancelled):
                        return
                    raise _page_error(event.error)
                elif event.kind == "done":
                    paths = [str(p) for p in event.result.paths]
                    shown = paths if command == "generate" else paths[0]
                    yield paths, shown, preview, event.result.parameters
                    return
                else:
                    yield skip, skip, skip, skip  # a heartbeat: Gradio can close (cancel) us here
        finally:
            run.cancel()  # closed by a cancel or a disconnect: the run stops at the end of its step

    # unset (None) means the command line's default, so every value but the prompt may be left out
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter(n, kind) if n in ("prompt", "background") else inspect.Parameter(n, kind, default=None)
        for n in names
    ]
    progress = inspect.Parameter("progress", kind, default=gr.Progress())
    handle.__signature__ = inspect.Signature([*parameters, progress])  # type: ignore[attr-defined]
    handle.__name__ = command
    return handle


def _plain(value: Any) -> Any:
    """A form value as the service takes it: an image editor's value becomes its mask file (or None)."""
    if isinstance(value, dict) and "layers" in value:  # gr.ImageEditor: drawn layers, else the uploaded image
        return _editor_mask(value)
    return value


def _editor_mask(value: dict) -> str | None:
    """The mask of an image editor's value: the union of its drawn layers (white where drawn) saved next to
    them, or the uploaded background itself when nothing was drawn; None when empty."""
    import numpy as np
    from PIL import Image

    layers = [p for p in value.get("layers") or [] if p]
    if not layers:
        return value.get("background") or None
    union = None
    for path in layers:
        with Image.open(path) as layer:
            alpha = np.asarray(layer.convert("RGBA").getchannel("A")) > 0
        union = alpha if union is None else union | alpha
    out = str(layers[0]) + ".mask.png"
    Image.fromarray((union * 255).astype(np.uint8), "L").save(out)
    return out


def _page_error(error: BaseException) -> gr.Error:
    """The one-line message the command line would print, as an error shown in the page."""
    message = error_message(error)
    if message is None:  # a bug, not bad input: logged in full here, one line in the page
        log.error("request failed", exc_info=error)
        message = f"internal error ({type(error).__name__}): {error}"
    return gr.Error(message, print_exception=False)


def _info_tab(service: Service, tabs: gr.Tabs, forms: dict[str, dict[str, Any]]) -> None:
    """PNG Info: drop a PNG, see its parameters, send them to a tab's form."""
    dropped = gr.File(label="a PNG written by syncguide (or AUTOMATIC1111)", type="filepath", elem_id="info-file")
    shown = gr.JSON(label="stored parameters", elem_id="info-parameters")
    with gr.Row():
        buttons = {name: gr.Button(f"Send to {name}", elem_id=f"info-to-{name}") for name in forms}

    def read(path: str | None) -> dict[str, Any] | None:
        if not path:
            return None
        try:
            return service.png_info(path)
        except Exception as error:
            raise _page_error(error) from None

    dropped.change(read, inputs=dropped, outputs=shown, api_name="png_info")
    for name, button in buttons.items():
        form = forms[name]
        targets = list(form)
        button.click(
            _sender(name, targets), inputs=shown, outputs=[*(form[t] for t in targets), tabs], api_visibility="private"
        )


def _sender(command: str, targets: list[str]) -> Callable[[dict | None], list]:
    """Stored parameters -> the values of ``command``'s form (unchanged where none is stored), then the tab."""

    def send(stored: dict | None) -> list:
        stored = dict(stored or {})
        if command == "layout":
            stored.setdefault("background", stored.get("prompt"))
            for k, region in enumerate(stored.get("regions") or [], start=1):
                if k <= REGIONS and isinstance(region, dict):
                    stored[f"region{k}_prompt"] = region.get("prompt")
                    box = region.get("box")
                    stored[f"region{k}_box"] = ",".join(map(str, box)) if isinstance(box, list) else box
        elif command == "panorama":
            stored.setdefault("prompt", stored.get("background"))
        values = []
        for name in targets:
            keep = name not in stored or name in ("content", "style") or name.endswith("_mask")
            values.append(gr.skip() if keep else stored[name])
        return [*values, gr.Tabs(selected=command)]

    return send
