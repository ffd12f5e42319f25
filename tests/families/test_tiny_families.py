"""The tiny random SDXL, FLUX.1 and SD3 pipelines: local tokenizers that survive a save/load round trip, and each
family's own diffusers pipeline loading the saved directory offline and sampling what the in-memory components do."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusion3Pipeline
from transformers import CLIPTokenizer, T5TokenizerFast

from syncguide.models.tiny import TINY_WORDS
from syncguide.models.tiny_families import (
    PIPELINES,
    build_t5_tokenizer,
    save_tiny_family,
    tiny_family_components,
)
from syncguide.models.tokenizer import bpe_tables

PROMPT = "a photo of the mountains at sunset"
HEIGHT, WIDTH = 16, 24  # not square: a swapped height and width shows
RUN = {
    "sdxl": {"guidance_scale": 5.0},
    "flux": {"guidance_scale": 3.5, "max_sequence_length": 32},
    "flux-schnell": {"guidance_scale": 0.0, "max_sequence_length": 32},
    "sd3": {"guidance_scale": 5.0, "max_sequence_length": 32},
}
FIXTURES = {"sdxl": "sdxl_dir", "flux": "flux_dir", "flux-schnell": "flux_schnell_dir", "sd3": "sd3_dir"}
T5_SIZE = 3 + 1 + len(set(TINY_WORDS)) + len(string.ascii_letters + string.digits + string.punctuation)


def _run(pipe: DiffusionPipeline, family: str) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    kwargs = {"height": HEIGHT, "width": WIDTH, "num_inference_steps": 2, "output_type": "np", **RUN[family]}
    return pipe(PROMPT, generator=generator, **kwargs).images


def test_clip_and_t5_tokenizers_keep_their_size_through_save_and_load(
    sdxl_dir: Path, flux_dir: Path, sd3_dir: Path, tmp_path
) -> None:
    clip_size = len(bpe_tables(TINY_WORDS)[0])
    for folder in (sdxl_dir / "tokenizer", sdxl_dir / "tokenizer_2", flux_dir / "tokenizer", sd3_dir / "tokenizer"):
        clip = CLIPTokenizer.from_pretrained(folder)
        assert len(clip) == clip_size and clip.model_max_length == 16
    built = build_t5_tokenizer(TINY_WORDS, tmp_path / "t5")
    for folder in (tmp_path / "t5", flux_dir / "tokenizer_2", sd3_dir / "tokenizer_3"):
        t5 = T5TokenizerFast.from_pretrained(folder)
        assert len(t5) == len(built) == T5_SIZE
        assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.model_max_length) == (0, 1, 2, 32)
        ids = t5(PROMPT).input_ids
        assert ids == built(PROMPT).input_ids and len(ids) == len(PROMPT.split()) + 1  # a token a word, then </s>
        assert t5.unk_token_id not in ids and ids[-1] == t5.eos_token_id
        assert t5.unk_token_id not in t5("Zebra 42!").input_ids  # other text: by characters


@pytest.mark.parametrize("family", list(PIPELINES))
def test_components_are_what_the_pipeline_takes_and_fit_together(family: str, tmp_path) -> None:
    parts = tiny_family_components(family, tmp_path)
    expected, _ = PIPELINES[family]._get_signature_keys(PIPELINES[family])
    assert set(parts) == set(expected)
    for name, encoder in parts.items():
        if name.startswith("text_encoder") and encoder is not None:
            assert encoder.config.vocab_size == len(parts["tokenizer" + name.removeprefix("text_encoder")])
    if family == "sdxl":
        unet = parts["unet"].config
        assert unet.addition_embed_type == "text_time"
        assert unet.cross_attention_dim == parts["text_encoder"].config.hidden_size + 32
        assert unet.projection_class_embeddings_input_dim == 6 * unet.addition_time_embed_dim + 32
    elif family.startswith("flux"):
        transformer, scheduler = parts["transformer"].config, parts["scheduler"].config
        assert transformer.guidance_embeds == (family == "flux") == scheduler.use_dynamic_shifting
        assert sum(transformer.axes_dims_rope) == transformer.attention_head_dim
        assert transformer.in_channels == 4 * parts["vae"].config.latent_channels
        assert parts["vae"].config.shift_factor == 0.1159 and not parts["vae"].config.use_quant_conv
    else:
        transformer = parts["transformer"].config
        assert transformer.joint_attention_dim == parts["text_encoder_3"].config.d_model
        assert transformer.pooled_projection_dim == 16 + 32
        assert parts["scheduler"].config.shift == 3.0


def _in_own_memory(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Copy every weight of ``pipe`` into memory of its own.

    diffusers' ``from_pretrained`` leaves weights in the memory-mapped safetensors file, at addresses that are not
    64-byte aligned, and CPU matrix-vector kernels round differently there (FLUX's batch-1 time embedding: last-ulp
    differences, 4e-7 in the image). In freshly allocated (aligned) memory the same numbers give the same image.
    """
    for part in pipe.components.values():
        if isinstance(part, torch.nn.Module):
            for tensor in [*part.parameters(), *part.buffers()]:
                tensor.data = tensor.data.clone()
    return pipe


@pytest.mark.parametrize("family", list(PIPELINES))
def test_saved_pipeline_loads_and_samples_as_the_in_memory_one(family: str, request, tmp_path) -> None:
    directory = request.getfixturevalue(FIXTURES[family])
    index = json.loads((directory / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINES[family].__name__
    pipe = PIPELINES[family].from_pretrained(directory)
    loaded = _run(pipe, family)
    assert loaded.shape == (1, HEIGHT, WIDTH, 3)
    assert np.isfinite(loaded).all() and loaded.std() > 0
    memory = PIPELINES[family](**tiny_family_components(family, tmp_path))
    for name, part in memory.components.items():
        if isinstance(part, torch.nn.Module):
            reloaded = getattr(pipe, name).state_dict()
            assert all(torch.equal(tensor, reloaded[key]) for key, tensor in part.state_dict().items()), name
    public = [{k: v for k, v in part.scheduler.config.items() if not k.startswith("_")} for part in (pipe, memory)]
    assert public[0] == public[1] and type(pipe.scheduler) is type(memory.scheduler)
    in_memory = _run(memory, family)
    np.testing.assert_allclose(loaded, in_memory, rtol=0, atol=1e-5)  # see _in_own_memory
    np.testing.assert_array_equal(_run(_in_own_memory(pipe), family), in_memory)


def test_flux_dev_and_schnell_differ_in_guidance_and_shift(flux_dir: Path, flux_schnell_dir: Path) -> None:
    dev = PIPELINES["flux"].from_pretrained(flux_dir)
    schnell = PIPELINES["flux-schnell"].from_pretrained(flux_schnell_dir)
    assert dev.transformer.config.guidance_embeds and not schnell.transformer.config.guidance_embeds
    assert dev.scheduler.config.use_dynamic_shifting and not schnell.scheduler.config.use_dynamic_shifting


def test_sd3_runs_without_t5(sd3_dir: Path, tmp_path) -> None:
    with_t5 = _run(StableDiffusion3Pipeline.from_pretrained(sd3_dir), "sd3")
    dropped = StableDiffusion3Pipeline.from_pretrained(sd3_dir, text_encoder_3=None, tokenizer_3=None)
    assert dropped.text_encoder_3 is None
    without = _run(dropped, "sd3")
    assert without.shape == (1, HEIGHT, WIDTH, 3) and np.isfinite(without).all()
    assert np.abs(without - with_t5).max() > 0  # the T5 states were used, and zeros replace them
    no_t5 = save_tiny_family("sd3", tmp_path / "no-t5", with_t5=False)
    assert json.loads((no_t5 / "model_index.json").read_text())["text_encoder_3"] == [None, None]
    # diffusers refuses a null component unless it is an optional one or passed, as here
    saved = StableDiffusion3Pipeline.from_pretrained(no_t5, text_encoder_3=None, tokenizer_3=None)
    assert saved.text_encoder_3 is None and saved.tokenizer_3 is None
    assert np.isfinite(_run(saved, "sd3")).all()


def test_unknown_family_and_schnell_with_guidance_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="family must be one of"):
        save_tiny_family("kandinsky", tmp_path)
    with pytest.raises(ValueError, match="no guidance embedding"):
        save_tiny_family("flux-schnell", tmp_path, guidance_embeds=True)
