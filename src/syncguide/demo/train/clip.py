"""A tiny CLIP of the demo world, in transformers format (``CLIPModel`` + ``CLIPTokenizer`` + ``CLIPImageProcessor``).

The vision tower reads 64 x 64 crops (patch 8), the text tower captions of the world's ``VOCABULARY`` through the
BPE tokenizer of :func:`syncguide.models.tokenizer.build_tokenizer` (32 positions). Training uses the symmetric
InfoNCE loss of CLIP on crops and captions generated per batch from their labels: with probability ``full_prob``
a full caption (naming everything), otherwise a random subset. Images in [-1, 1] are exactly the processor's
normalisation (mean = std = 0.5), so tensors go in directly as ``pixel_values``.

Example::

    model_dir = train(Path("runs/clip"), steps=2000)
    model, tokenizer, processor = load_clip_parts(model_dir)
    print(evaluate(model_dir))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer
from transformers.utils import logging as hf_logging

from syncguide.demo.train.common import load_crops, optimizer_step, run_steps, warmup_cosine_lr
from syncguide.demo.world import SEASONS, TERRAINS, TIMES, VOCABULARY, WATERS, caption, crop_dataset
from syncguide.models.tokenizer import build_tokenizer, check_tokenizer
from syncguide.training import Checkpoint, batch_indices, resume_step, step_generator

__all__ = [
    "DEFAULT_TEXT_CONFIG",
    "DEFAULT_VISION_CONFIG",
    "FULL",
    "SEASON_PROMPTS",
    "TIME_PROMPTS",
    "attributes_of",
    "augment",
    "batch_captions",
    "build_clip",
    "clip_loss",
    "encode_images",
    "encode_texts",
    "evaluate",
    "load_clip_parts",
    "make_processor",
    "make_tokenizer",
    "save_clip",
    "train",
]

MAX_LENGTH = 32
"""Text positions of the tokenizer and the text tower."""
FULL: tuple[str, ...] = ("time", "season", "terrain", "water", "objects")
"""``names`` of a full caption."""
DEFAULT_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": MAX_LENGTH,
}
DEFAULT_VISION_CONFIG: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 8,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
}
TIME_PROMPTS: dict[str, str] = {
    "day": "a photo of a landscape by day",
    "sunset": "a photo of a landscape at sunset",
    "night": "a photo of a landscape at night",
}
"""Zero-shot prompts of the values of ``time`` (in caption style)."""
SEASON_PROMPTS: dict[str, str] = {
    "summer": "a photo of a summer landscape",
    "autumn": "a photo of an autumn landscape",
    "snow": "a photo of a snowy landscape",
}
"""Zero-shot prompts of the values of ``season``."""
TERRAIN_PROMPTS: dict[str, str] = {terrain: f"a photo of {terrain}" for terrain in TERRAINS}
"""Zero-shot prompts of the values of ``terrain``."""


def make_tokenizer(directory: str | Path) -> CLIPTokenizer:
    """The CLIP tokenizer of the world's ``VOCABULARY`` (32 positions), written to ``directory``."""
    return build_tokenizer(VOCABULARY, directory, max_length=MAX_LENGTH)


def make_processor() -> CLIPImageProcessor:
    """The image processor of the tiny CLIP: 64 px, normalised to [-1, 1]."""
    return CLIPImageProcessor(
        size=64, crop_size=64, image_mean=[0.5] * 3, image_std=[0.5] * 3, do_resize=True, do_center_crop=True
    )


def build_clip(
    tokenizer: CLIPTokenizer,
    text_config: dict[str, Any] | None = None,
    vision_config: dict[str, Any] | None = None,
    projection_dim: int = 64,
) -> CLIPModel:
    """A freshly initialised CLIPModel for ``tokenizer``; the configs override the defaults."""
    text = {
        **DEFAULT_TEXT_CONFIG,
        **(text_config or {}),
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if text["max_position_embeddings"] < tokenizer.model_max_length:
        raise ValueError(f"text max_position_embeddings must be >= {tokenizer.model_max_length}")
    vision = {**DEFAULT_VISION_CONFIG, **(vision_config or {})}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    return CLIPModel(config)


def save_clip(model: CLIPModel, tokenizer: CLIPTokenizer, directory: str | Path) -> Path:
    """Export model (safetensors), tokenizer and image processor into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    make_processor().save_pretrained(directory)
    return directory


def load_clip_parts(directory: str | Path) -> tuple[CLIPModel, CLIPTokenizer, CLIPImageProcessor]:
    """``(model in eval mode, tokenizer, processor)`` exported by ``save_clip`` (offline, safetensors)."""
    directory = Path(directory)
    model = CLIPModel.from_pretrained(directory, use_safetensors=True, local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(directory, local_files_only=True)
    check_tokenizer(tokenizer, model.config.text_config.vocab_size)
    processor = CLIPImageProcessor.from_pretrained(directory, local_files_only=True)
    return model, tokenizer, processor


def attributes_of(labels: dict[str, torch.Tensor], index: int) -> dict[str, Any]:
    """The attribute dict (as ``WorldLabels.attributes``) of row ``index`` of integer ``labels``."""
    return {
        "time": TIMES[int(labels["time"][index])],
        "season": SEASONS[int(labels["season"][index])],
        "terrain": TERRAINS[int(labels["terrain"][index])],
        "water": WATERS[int(labels["water"][index])],
        "trees": bool(labels["trees"][index]),
        "houses": bool(labels["houses"][index]),
    }


def batch_captions(labels: dict[str, torch.Tensor], rng: np.random.Generator, full_prob: float = 0.5) -> list[str]:
    """A caption per row of ``labels``: a full one with probability ``full_prob``, else a random subset."""
    captions = []
    for index in range(len(labels["time"])):
        full = rng.random() < full_prob
        captions.append(caption(attributes_of(labels, index), rng, names=FULL if full else None))
    return captions


def augment(x: torch.Tensor, generator: torch.Generator, lowres_prob: float = 0.25) -> torch.Tensor:
    """Per image a horizontal flip (p 0.5) and a bilinear 32-px round trip (p ``lowres_prob``)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    low = torch.rand(x.shape[0], generator=generator) < lowres_prob
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    small = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(low[:, None, None, None], up, x)


def _tokens(tokenizer: CLIPTokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    encoded = tokenizer(list(texts), padding="longest", truncation=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def clip_loss(model: CLIPModel, tokenizer: CLIPTokenizer, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Symmetric InfoNCE loss of CLIP for the pairs ``(images[i], texts[i])``; images in [-1, 1]."""
    return model(pixel_values=images, **_tokens(tokenizer, texts), return_loss=True).loss


@torch.no_grad()
def encode_texts(model: CLIPModel, tokenizer: CLIPTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised text embeddings ``(N, projection_dim)``."""
    features = model.get_text_features(**_tokens(tokenizer, texts)).pooler_output
    return F.normalize(features, dim=-1)


@torch.no_grad()
def encode_images(model: CLIPModel, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """L2-normalised image embeddings ``(N, projection_dim)`` of images ``(N, 3, 64, 64)`` in [-1, 1]."""
    chunks = [
        model.get_image_features(pixel_values=images[i : i + batch_size]).pooler_output
        for i in range(0, images.shape[0], batch_size)
    ]
    return F.normalize(torch.cat(chunks), dim=-1)


def _optimizer(model: CLIPModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def train(
    out: str | Path,
    steps: int = 4000,
    seed: int = 0,
    batch_size: int = 128,
    n_data: int = 20000,
    resume: bool = True,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 200,
    every: int = 250,
    full_prob: float = 0.5,
    lowres_prob: float = 0.25,
    text_config: dict[str, Any] | None = None,
    vision_config: dict[str, Any] | None = None,
    projection_dim: int = 64,
    stop_at: int | None = None,
) -> Path:
    """Train the tiny CLIP deterministically into ``out`` and export it to ``out/model``; returns that directory.

    The data are ``n_data`` crops drawn from ``seed``; batch k (rows, captions and augmentation) is drawn with
    ``step_generator(seed, k)``. AdamW (weight decay on matrices only) with linear warm-up and cosine decay; the
    logit scale is clamped to 100 as in CLIP. A checkpoint is written to ``out/checkpoint`` every ``every`` steps
    and at the end; with ``resume`` a run continues from it (bit for bit as an uninterrupted run), otherwise it
    starts afresh. The tokenizer is built in ``out/tokenizer``. ``stop_at`` stops after that many steps as if
    interrupted (checkpoint written, nothing exported) and returns the checkpoint directory.
    """
    out = Path(out)
    hf_logging.set_verbosity_error()
    tokenizer = make_tokenizer(out / "tokenizer")
    torch.manual_seed(seed)
    model = build_clip(tokenizer, text_config, vision_config, projection_dim)
    optimizer = _optimizer(model, lr, weight_decay)
    checkpoint = Checkpoint(out / "checkpoint")
    settings = {
        "seed": seed,
        "batch_size": batch_size,
        "n_data": n_data,
        "lr": lr,
        "steps": steps,
        "full_prob": full_prob,
        "lowres_prob": lowres_prob,
    }
    start = resume_step(checkpoint, {"clip": model}, optimizer, settings, resume)
    if start < steps:
        data = load_crops("clip", seed, n_data, start, steps)
        model.train()
        max_scale = math.log(100.0)

        def step_fn(k: int) -> float:
            generator = step_generator(seed, k)
            images, labels, _ = data.batch(batch_indices(len(data), batch_size, generator))
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
            texts = batch_captions(labels, rng, full_prob)
            images = augment(images, generator, lowres_prob)
            loss = clip_loss(model, tokenizer, images, texts)
            optimizer_step(optimizer, loss, warmup_cosine_lr(k, steps, lr, warmup))
            with torch.no_grad():
                model.logit_scale.clamp_(max=max_scale)
            return float(loss.detach())

        def save(k: int) -> None:
            checkpoint.save(k, {"clip": model}, optimizer, settings)

        if not run_steps(step_fn, start, steps, stop_at, save, every, "clip"):
            return checkpoint.directory
    return save_clip(model.eval(), tokenizer, out / "model")


def _zero_shot(image_embeds: torch.Tensor, text_embeds: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((image_embeds @ text_embeds.T).argmax(dim=1) == truth).float().mean())


@torch.no_grad()
def evaluate(
    model_dir: str | Path, seed: int = 54321, rounds: int = 100, group: int = 20, crops_per_panorama: int = 1
) -> dict[str, float]:
    """Retrieval and zero-shot accuracies of the CLIP in ``model_dir`` on fresh crops drawn from ``seed``.

    ``t2i_top1``: per round, ``group`` crops and their full captions; the fraction of captions whose own crop has
    the highest cosine similarity among the ``group``. ``i2t_top1``: the same from images to captions.
    By default every crop comes from its own panorama: crops of one panorama share time and season and often
    all local labels, so their full captions coincide and no model can tell them apart.
    ``t2i_ceiling``: the expected ``t2i_top1`` of a perfect model that picks at random among the crops with the
    caption's attributes; ``t2i_attr`` / ``i2t_attr``: the fraction of top-1 matches with exactly the
    attributes of the query (ties count as right).
    ``zeroshot_time`` / ``zeroshot_season`` / ``zeroshot_terrain``: accuracy of the best-matching prompt among
    the values (``TIME_PROMPTS`` ...) over all crops.
    """
    hf_logging.set_verbosity_error()
    model, tokenizer, _ = load_clip_parts(model_dir)
    total = rounds * group
    pixels, raw_labels, _ = crop_dataset(seed, total, crops_per_panorama=crops_per_panorama)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = {key: torch.from_numpy(value) for key, value in raw_labels.items()}
    attrs = [attributes_of(labels, i) for i in range(total)]
    keys = [tuple(sorted(a.items())) for a in attrs]
    rng = np.random.default_rng(seed)
    texts = [caption(a, rng, names=FULL) for a in attrs]
    image_embeds = encode_images(model, images)
    text_embeds = torch.cat([encode_texts(model, tokenizer, texts[i : i + 500]) for i in range(0, total, 500)])
    counts = dict.fromkeys(("t2i_top1", "i2t_top1", "t2i_attr", "i2t_attr", "t2i_ceiling"), 0.0)
    for r in range(rounds):
        rows = range(r * group, (r + 1) * group)
        sims = text_embeds[rows.start : rows.stop] @ image_embeds[rows.start : rows.stop].T
        for name, best in (("t2i", sims.argmax(dim=1)), ("i2t", sims.argmax(dim=0))):
            for j, b in enumerate(best.tolist()):
                counts[f"{name}_top1"] += b == j
                counts[f"{name}_attr"] += keys[rows[b]] == keys[rows[j]]
        for i in rows:
            counts["t2i_ceiling"] += 1 / sum(keys[i] == keys[m] for m in rows)
    result = {key: value / max(1, total) for key, value in counts.items()}
    for name, prompts, values in (
        ("time", TIME_PROMPTS, TIMES),
        ("season", SEASON_PROMPTS, SEASONS),
        ("terrain", TERRAIN_PROMPTS, TERRAINS),
    ):
        prompt_embeds = encode_texts(model, tokenizer, [prompts[v] for v in values])
        result[f"zeroshot_{name}"] = _zero_shot(image_embeds, prompt_embeds, labels[name]) if total else 0.0
    return result
