import pytest
import torch

from syncguide.tiling import Window, anchor_index, coverage, crop, crop_all, fuse, make_windows


@pytest.mark.parametrize(("pixels", "count"), [(3072, 21), (2048, 13), (4096, 29)])
def test_paper_window_counts(pixels: int, count: int) -> None:
    windows = make_windows(64, pixels // 8, window=64, stride=16)
    assert len(windows) == count
    assert anchor_index(windows) == count // 2
    assert windows[anchor_index(windows)] == Window(0, (pixels // 8 - 64) // 2, 64)


@pytest.mark.parametrize("height", [8, 11, 16, 21])
@pytest.mark.parametrize("width", [8, 9, 13, 24, 37])
@pytest.mark.parametrize("stride", [1, 3, 5, 8])
def test_every_latent_pixel_is_covered(height: int, width: int, stride: int) -> None:
    windows = make_windows(height, width, window=8, stride=stride)
    assert coverage(height, width, windows).min() >= 1
    assert all(w.top + 8 <= height and w.left + 8 <= width for w in windows)
    assert len(set(windows)) == len(windows)


def test_last_window_is_flush_with_the_edge() -> None:
    width = 64 + 3 * 16 + 5
    lefts = [w.left for w in make_windows(64, width, 64, 16)]
    assert lefts == [0, 16, 32, 48, width - 64]


def test_grid_when_taller_than_a_window() -> None:
    windows = make_windows(96, 128, 64, 16)
    assert sorted({w.top for w in windows}) == [0, 16, 32]
    assert len(windows) == 3 * 5
    assert windows[:5] == [Window(0, left, 64) for left in (0, 16, 32, 48, 64)]  # row-major


@pytest.mark.parametrize(("width", "stride"), [(384, 16), (64, 16), (96, 8), (128, 64)])
def test_circular_covers_every_column_equally(width: int, stride: int) -> None:
    windows = make_windows(64, width, 64, stride, circular=True)
    cover = coverage(64, width, windows)
    assert (cover == 64 // stride).all()
    assert any(w.left + w.size > width for w in windows) == (stride < 64)


def test_circular_rejects_strides_that_cannot_cover_evenly() -> None:
    with pytest.raises(ValueError, match="divide"):
        make_windows(64, 100, 64, 16, circular=True)
    with pytest.raises(ValueError, match="divide"):
        make_windows(64, 384, 64, 24, circular=True)


@pytest.mark.parametrize(("h", "w", "window", "stride"), [(4, 8, 4, 0), (4, 8, 4, 5), (3, 8, 4, 1), (4, 3, 4, 1)])
def test_bad_geometry_raises(h: int, w: int, window: int, stride: int) -> None:
    with pytest.raises(ValueError):
        make_windows(h, w, window, stride)


def test_circular_crop_wraps_around() -> None:
    canvas = torch.arange(2 * 3 * 4 * 10, dtype=torch.float32).reshape(2, 3, 4, 10)
    tile = crop(canvas, Window(0, 8, 4))
    assert torch.equal(tile, torch.cat([canvas[..., 8:10], canvas[..., 0:2]], dim=-1))


@pytest.mark.parametrize("circular", [False, True])
def test_fuse_of_crops_is_identity(circular: bool) -> None:
    canvas = torch.randint(-50, 50, (2, 4, 12, 40)).float()  # integers: every average is exact
    windows = make_windows(12, 40, 8, 4, circular=circular)
    views = crop_all(canvas, windows)
    assert views.shape == (len(windows) * 2, 4, 8, 8)
    assert torch.equal(fuse(views, windows, canvas.shape), canvas)


def test_fuse_averages_overlaps_uniformly() -> None:
    windows = [Window(0, 0, 2), Window(0, 1, 2)]
    views = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 3.0)])
    fused = fuse(views, windows, torch.Size([1, 1, 2, 3]))
    assert fused[0, 0].tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
