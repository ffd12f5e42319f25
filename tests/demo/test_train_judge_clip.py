"""Fast checks of the demo-world training recipes: the attribute judge and the tiny CLIP (tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from syncguide.demo.train import clip, judge
from syncguide.demo.train.common import make_crops

SMALL_JUDGE = {"channels": (8, 16, 16, 16), "groups": 4}
SMALL_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY = {"steps": 6, "n_data": 64, "batch_size": 8, "every": 3}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train_judge(out: Path, **kwargs) -> Path:
    return judge.train(out, **TINY, config=SMALL_JUDGE, **kwargs)


def _train_clip(out: Path, **kwargs) -> Path:
    return clip.train(out, **TINY, text_config=SMALL_TOWER, vision_config=SMALL_TOWER, projection_dim=16, **kwargs)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _overfits(model: torch.nn.Module, loss_fn, lr: float, steps: int = 12) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------------------------------------ judge


def test_judge_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = judge.Judge(**SMALL_JUDGE)
    data = make_crops(1, 16)
    _overfits(model, lambda: judge.judge_loss(model, data.images, data.labels), lr=1e-2)


def test_judge_resume_equals_uninterrupted_run(tmp_path: Path):
    full = _train_judge(tmp_path / "full")
    stopped = _train_judge(tmp_path / "split", stop_at=3)
    assert stopped == tmp_path / "split" / "checkpoint"
    assert not (tmp_path / "split" / "model").exists()
    resumed = _train_judge(tmp_path / "split")
    _assert_same_weights(load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors"))
    # Without resume the run starts afresh and still gives the same model.
    again = _train_judge(tmp_path / "split", resume=False)
    _assert_same_weights(load_file(full / "model.safetensors"), load_file(again / "model.safetensors"))


def test_judge_export_predict_and_evaluate(tmp_path: Path):
    model_dir = _train_judge(tmp_path / "run")
    assert {p.name for p in model_dir.iterdir()} == {"model.safetensors", "config.json"}
    loaded = judge.load_judge(model_dir)
    assert not loaded.training
    _assert_same_weights(loaded.state_dict(), load_file(model_dir / "model.safetensors"))
    x = torch.rand(5, 3, 64, 64) * 2 - 1
    assert loaded.features(x).shape == (5, 16)
    for size in (64, 32):
        predicted = loaded.predict(torch.nn.functional.interpolate(x, size=(size, size), mode="area"))
        assert set(predicted) == set(judge.ATTRIBUTES)
        for name, values in judge.ATTRIBUTES.items():
            assert predicted[name].shape == (5,) and predicted[name].dtype == torch.long
            assert int(predicted[name].min()) >= 0 and int(predicted[name].max()) < len(values)
    scores = judge.evaluate(model_dir, n=24)
    assert set(scores) == {f"{name}{s}" for name in judge.ATTRIBUTES for s in ("", "_32")}
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_judge_augment_is_deterministic():
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    a = judge.augment(x, torch.Generator().manual_seed(3))
    b = judge.augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape


# ------------------------------------------------------------------------------------------------- clip


def test_clip_overfits_a_fixed_batch(tmp_path: Path):
    tokenizer = clip.make_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    model = clip.build_clip(tokenizer, SMALL_TOWER, SMALL_TOWER, projection_dim=16)
    data = make_crops(2, 8)
    texts = clip.batch_captions(data.labels, np.random.default_rng(0), full_prob=1.0)
    _overfits(model, lambda: clip.clip_loss(model, tokenizer, data.images, texts), lr=3e-3, steps=15)


def test_clip_captions_match_labels():
    data = make_crops(4, 12)
    texts = clip.batch_captions(data.labels, np.random.default_rng(1), full_prob=1.0)
    for i, text in enumerate(texts):
        attrs = clip.attributes_of(data.labels, i)
        assert attrs["terrain"] in text
        assert {"day": "day", "sunset": "sunset", "night": "night"}[attrs["time"]] in text
        assert {"summer": "summer", "autumn": "autumn", "snow": "snowy"}[attrs["season"]] in text


def test_clip_resume_equals_uninterrupted_run(tmp_path: Path):
    full = _train_clip(tmp_path / "full")
    assert _train_clip(tmp_path / "split", stop_at=4) == tmp_path / "split" / "checkpoint"
    resumed = _train_clip(tmp_path / "split")
    _assert_same_weights(load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors"))


def test_clip_export_loads_offline_and_evaluates(tmp_path: Path):
    model_dir = _train_clip(tmp_path / "run")
    built = clip.make_tokenizer(tmp_path / "built")
    model = CLIPModel.from_pretrained(model_dir, local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, local_files_only=True)
    processor = CLIPImageProcessor.from_pretrained(model_dir, local_files_only=True)
    assert len(tokenizer) == len(built) == model.config.text_config.vocab_size
    assert tokenizer.model_max_length == 32
    assert tokenizer("a photo of snowy hills at night").input_ids == built("a photo of snowy hills at night").input_ids
    assert model.config.vision_config.image_size == 64 and model.config.vision_config.patch_size == 8
    _assert_same_weights(model.state_dict(), load_file(model_dir / "model.safetensors"))
    pixels = processor(images=[torch.full((3, 64, 64), 255, dtype=torch.uint8)], return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 64, 64) and torch.allclose(pixels, torch.ones_like(pixels))
    scores = clip.evaluate(model_dir, rounds=2)
    assert set(scores) >= {"t2i_top1", "i2t_top1", "zeroshot_time", "zeroshot_season"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
