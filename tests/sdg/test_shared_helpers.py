"""One Gram matrix and one image-file loader, shared by guidance, fine-tuning, the CLI and the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from syncguide import features, images
from syncguide.cli.guidance_args import read_image
from syncguide.evaluation import inputs
from syncguide.finetune_clip import training_images
from syncguide.guidance import semantic
from syncguide.metrics import pairwise


def _write(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_guidance_and_metrics_use_one_gram() -> None:
    assert semantic.gram is pairwise.gram is features.gram
    maps = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    flat = maps.flatten(2).double()
    expected = flat @ flat.transpose(1, 2) / (4 * 15)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        got = features.gram(maps.to(dtype))
        assert got.dtype == torch.float32  # half precision is widened
        torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)
    assert features.gram(maps.double()).dtype == torch.float64
    assert torch.equal(features.gram(maps), features.gram(maps.flatten(2)))  # (B, C, h, w) or (B, C, N)


def test_load_images_maps_8bit_values_onto_the_stated_range(tmp_path: Path) -> None:
    pixels = [_write(tmp_path / f"{k}.png", 6, 10, k) for k in range(2)]
    paths = [tmp_path / "0.png", tmp_path / "1.png"]
    as_tensor = torch.from_numpy(np.stack(pixels).astype(np.float32)).permute(0, 3, 1, 2)
    unit = images.load_images(paths, value_range=images.UNIT)
    signed = images.load_images(paths, value_range=images.SIGNED)
    assert unit.shape == (2, 3, 6, 10) and unit.dtype == torch.float32
    assert torch.equal(unit, as_tensor / 255.0) and torch.equal(images.load_images(paths), unit)  # UNIT: default
    assert torch.equal(signed, as_tensor / 127.5 - 1)
    assert unit.min() >= 0 and unit.max() <= 1 and signed.min() >= -1 and signed.max() <= 1
    with pytest.raises(ValueError, match="high > low"):
        images.load_images(paths, value_range=(1.0, 0.0))


def test_load_images_resizes_and_centre_crops_or_refuses_mixed_sizes(tmp_path: Path) -> None:
    pixels = _write(tmp_path / "wide.png", 8, 16, 0)
    _write(tmp_path / "small.png", 4, 4, 1)
    paths = [tmp_path / "wide.png", tmp_path / "small.png"]
    with pytest.raises(ValueError, match="one size"):
        images.load_images(paths)
    square = images.load_images(paths, value_range=images.UNIT, resolution=8)
    assert square.shape == (2, 3, 8, 8)
    centre = torch.from_numpy(pixels[:, 4:12].astype(np.float32)).permute(2, 0, 1) / 255.0
    assert torch.equal(square[0], centre)  # already 8 px high: no resize, the middle 8 columns


def test_evaluation_finetuning_and_cli_read_files_with_the_one_loader(tmp_path: Path) -> None:
    assert inputs.load_images is images.load_images
    (tmp_path / "sub").mkdir()
    pixels = _write(tmp_path / "sub" / "a.png", 12, 12, 2)
    _write(tmp_path / "b.PNG", 12, 12, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    files = images.image_files(tmp_path)
    assert files == [tmp_path / "b.PNG", tmp_path / "sub" / "a.png"]
    expected = images.load_images(files, value_range=images.SIGNED, resolution=12)
    assert torch.equal(training_images(str(tmp_path), 12), expected)
    old_formula = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    assert torch.equal(read_image(tmp_path / "sub" / "a.png", "--style"), old_formula)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        training_images(str(tmp_path / "empty"), 12)
