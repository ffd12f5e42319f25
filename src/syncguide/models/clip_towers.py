"""Thin adapters over CLIP models (transformers ``CLIPModel`` and open_clip) with one interface for guidance.

A :class:`CLIPTower` takes images in model space, ``(B, 3, H, W)`` in [-1, 1] at any size, resizes them
(bilinear, differentiable) to the tower's input size and applies its normalisation, and exposes:

- ``embed(images)``: image embeddings ``(B, D)`` (not normalised), in the space of ``embed_text``;
- ``feature_maps(images)``: intermediate feature maps, each ``(B, C, N)`` (channels by positions), for Gram-matrix
  style losses (the ResNet stem and four stages, or four evenly spaced ViT blocks without the class token);
- ``embed_text(texts)``: text embeddings ``(n, D)`` from the frozen text tower;
- ``t`` (accepted and ignored): a plain tower reads every image as clean, which is the baseline that the
  noise-aware wrapper improves on; both then fit the same guidance code;
- ``norm_layers()``: the image tower's normalisation modules with their channel counts, which the noise-aware
  wrapper (:mod:`syncguide.models.noise_aware`) modulates by the timestep.

Only the image tower (``visual``) is ever trained; the text tower stays frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)


class CLIPTower(nn.Module):
    """Base adapter: preprocessing and the shared interface; subclasses wrap one library's model.

    Args:
        visual: the trainable image tower (everything between pixels and the image embedding).
        resolution: the tower's square input size in pixels.
        mean, std: the per-channel normalisation of [0, 1] pixels the tower was trained with.
    """

    def __init__(self, visual: nn.Module, resolution: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.visual = visual
        self.resolution = int(resolution)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> the tower's normalised input ``(B, 3, R, R)`` (R = ``resolution``)."""
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
        pixels = (images + 1) / 2
        return (pixels - self.mean.to(pixels.dtype)) / self.std.to(pixels.dtype)

    def norm_layers(self) -> list[tuple[nn.Module, int]]:
        """Every normalisation module of the image tower with its number of channels, in module order."""
        layers = []
        for module in self.visual.modules():
            if isinstance(module, nn.LayerNorm):
                layers.append((module, int(module.normalized_shape[-1])))
            elif isinstance(module, nn.GroupNorm):
                layers.append((module, int(module.num_channels)))
            elif isinstance(module, nn.BatchNorm2d):
                layers.append((module, int(module.num_features)))
        return layers

    def embed(self, images: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def feature_maps(self, images: torch.Tensor, t: torch.Tensor | None = None) -> list[torch.Tensor]:
        raise NotImplementedError

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def train(self, mode: bool = True) -> CLIPTower:
        """Training never updates BatchNorm statistics: they stay those of the original encoder."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


class TransformersCLIP(CLIPTower):
    """A transformers ``CLIPModel`` (ViT towers): the image tower is ``vision_model`` + ``visual_projection``."""

    def __init__(self, model: nn.Module, tokenizer, resolution: int, mean, std) -> None:
        visual = nn.ModuleDict({"vision": model.vision_model, "projection": model.visual_projection})
        super().__init__(visual, resolution, mean, std)
        self.text = nn.ModuleDict({"model": model.text_model, "projection": model.text_projection})
        self.text.requires_grad_(False).eval()
        self.tokenizer = tokenizer

    def embed(self, images: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Image embeddings ``(B, D)`` of images ``(B, 3, H, W)`` in [-1, 1]."""
        pooled = self.visual["vision"](pixel_values=self.preprocess(images)).pooler_output
        return self.visual["projection"](pooled)

    def feature_maps(self, images: torch.Tensor, t: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Patch tokens ``(B, C, N)`` after four evenly spaced encoder layers (class token dropped)."""
        hidden = self.visual["vision"](pixel_values=self.preprocess(images), output_hidden_states=True).hidden_states
        return [hidden[i][:, 1:].transpose(1, 2) for i in _spaced(len(hidden) - 1)]

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(n, D)`` (frozen text tower)."""
        device = self.text["projection"].weight.device
        ids = self.tokenizer(list(texts), padding="max_length", truncation=True, return_tensors="pt")
        with torch.no_grad():
            pooled = self.text["model"](input_ids=ids.input_ids.to(device)).pooler_output
            return self.text["projection"](pooled)


class OpenCLIP(CLIPTower):
    """An open_clip ``CLIP`` model: ModifiedResNet (``RN50``, ``RN50x16`` ...) or ViT image towers."""

    def __init__(self, model: nn.Module, tokenizer, mean, std) -> None:
        size = model.visual.image_size
        super().__init__(model.visual, size[0] if isinstance(size, tuple | list) else size, mean, std)
        self.model_text = _OpenCLIPText(model)
        self.tokenizer = tokenizer
        self._maps: list[torch.Tensor] = []
        for module in self._map_modules():
            module.register_forward_hook(self._keep_map)

    def _map_modules(self) -> list[nn.Module]:
        visual = self.visual
        if hasattr(visual, "layer1"):  # ModifiedResNet: the stem (after its pooling) and the four stages
            return [visual.avgpool, visual.layer1, visual.layer2, visual.layer3, visual.layer4]
        blocks = visual.transformer.resblocks
        return [blocks[i - 1] for i in _spaced(len(blocks))]

    def _keep_map(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._maps.append(output)

    def embed(self, images: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Image embeddings ``(B, D)`` of images ``(B, 3, H, W)`` in [-1, 1]."""
        embeddings = self.visual(self.preprocess(images))
        self._maps = []  # the hooks also saw this pass; keep no activations alive
        return embeddings

    def feature_maps(self, images: torch.Tensor, t: torch.Tensor | None = None) -> list[torch.Tensor]:
        """ResNet: stem and stage outputs ``(B, C, H*W)``; ViT: four evenly spaced blocks' tokens ``(B, C, N)``."""
        self._maps = []
        batch = images.shape[0]
        self.visual(self.preprocess(images))
        maps, self._maps = self._maps, []
        out = []
        for m in maps:
            if m.dim() == 4:
                out.append(m.flatten(2))
            else:  # transformer tokens, batch-first (B, N, C) or sequence-first (N, B, C)
                tokens = m if m.shape[0] == batch else m.transpose(0, 1)
                out.append(tokens[:, 1:].transpose(1, 2))
        return out

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``(n, D)`` (frozen text tower)."""
        with torch.no_grad():
            tokens = self.tokenizer(list(texts))
            return self.model_text(tokens.to(self.mean.device))


class _OpenCLIPText(nn.Module):
    """The text half of an open_clip model, frozen (its ``encode_text`` reads these attributes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for name, param in model.named_parameters():
            if not name.startswith("visual."):
                param.requires_grad_(False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def _spaced(n_layers: int, count: int = 4) -> list[int]:
    """``count`` evenly spaced 1-based layer indices ending at the last one, e.g. 12 -> [3, 6, 9, 12]."""
    count = min(count, n_layers)
    return sorted({max(1, round(n_layers * (k + 1) / count)) for k in range(count)})


def load_transformers_clip(name_or_dir: str | Path, device: torch.device | str = "cpu") -> TransformersCLIP:
    """A transformers CLIP from a hub id or a local directory (model, tokenizer and image-processor settings)."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from syncguide.models.tokenizer import check_tokenizer

    model = CLIPModel.from_pretrained(name_or_dir).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(name_or_dir)
    check_tokenizer(tokenizer, model.config.text_config.vocab_size)
    processor = CLIPImageProcessor.from_pretrained(name_or_dir)
    tower = TransformersCLIP(
        model, tokenizer, model.config.vision_config.image_size, processor.image_mean, processor.image_std
    )
    return tower.to(device)


def load_open_clip(spec: str, device: torch.device | str = "cpu") -> OpenCLIP:
    """An open_clip model from ``"ARCH/PRETRAINED"`` (e.g. ``"RN50x16/openai"``) or ``"hf-hub:ORG/NAME"``."""
    import open_clip

    if spec.startswith("hf-hub:"):
        model, _, preprocess = open_clip.create_model_and_transforms(spec)
        tokenizer = open_clip.get_tokenizer(spec)
    else:
        arch, _, pretrained = spec.partition("/")
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None)
        tokenizer = open_clip.get_tokenizer(arch)
    normalize = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    model = model.eval().requires_grad_(False)
    return OpenCLIP(model, tokenizer, normalize.mean, normalize.std).to(device)
