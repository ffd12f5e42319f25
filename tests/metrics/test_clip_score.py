"""Mean-CLIP-S against torchmetrics' CLIPScore on the same tiny random transformers CLIP."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.multimodal import clip_score as torchmetrics_clip_score
from torchmetrics.functional.multimodal.clip_score import _clip_score_update
from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from syncguide.metrics import MeanCLIPScore, clip_score
from syncguide.models.clip_towers import load_transformers_clip

TEXTS = ["a photo of the mountains", "sea at night", "hills", "a lake", "trees at sunset", "snow", "the sea", "hills"]


class TensorFeatures(torch.nn.Module):
    """transformers 5's ``get_*_features`` return model outputs; torchmetrics 1.9 expects the projected tensors."""

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return self.model.get_text_features(*args, **kwargs).pooler_output


@pytest.fixture(scope="module")
def model_and_processor(tiny_clip_dir):
    model = TensorFeatures(CLIPModel.from_pretrained(tiny_clip_dir).eval())
    image_processor = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(tiny_clip_dir))
    return model, processor


def test_clip_score_equals_torchmetrics(tiny_clip_dir, model_and_processor) -> None:
    tower = load_transformers_clip(tiny_clip_dir)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # at the CLIP's input size
    scores = clip_score(images, TEXTS, tower)
    with torch.no_grad():
        raw, _ = _clip_score_update(images * 255, TEXTS, *model_and_processor)  # 100 cos, before the clamp
        first = torchmetrics_clip_score(images[0] * 255, TEXTS[0], lambda: model_and_processor)
    assert (raw > 0).any() and (raw < 0).any()  # the clamp is exercised
    assert torch.allclose(scores, raw.clamp_min(0), atol=1e-4)
    assert float(scores[0]) == pytest.approx(float(first), abs=1e-4)
    metric = MeanCLIPScore(tower)
    metric.update(images[:3], TEXTS[:3])
    metric.update(images[3:], TEXTS[3:])
    assert float(metric.compute()) == pytest.approx(float(scores.double().mean()), rel=1e-6)


def test_clip_score_needs_one_text_per_image(tiny_clip_dir) -> None:
    tower = load_transformers_clip(tiny_clip_dir)
    with pytest.raises(ValueError, match="texts must be a list of one prompt per image"):
        clip_score(torch.rand(2, 3, 32, 32), ["one"], tower)
