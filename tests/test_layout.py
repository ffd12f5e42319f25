import pytest
import torch
from PIL import Image

from syncguide.layout import Layout, Region, box_mask, resize_mask
from syncguide.sampling.plan import region_plan
from syncguide.tiling import fuse, make_windows


def test_mask_image_of_any_size_is_resized_to_the_latent_grid_and_binarised(tmp_path) -> None:
    image = Image.new("L", (300, 100), 0)
    image.paste(255, (0, 0, 100, 100))  # the left third
    image.save(tmp_path / "mask.png")
    mask = Region.from_file("snow", tmp_path / "mask.png").latent_mask(8, 24)
    assert mask.dtype == torch.bool and mask.shape == (8, 24)
    assert mask[:, :8].all() and not mask[:, 8:].any()
    small = resize_mask(torch.tensor([[0.0, 1.0]]), 4, 6)  # enlarging a 1 x 2 mask
    assert small[:, 3:].all() and not small[:, :3].any()


def test_binarisation_threshold_is_half() -> None:
    assert resize_mask(torch.full((40, 40), 0.6), 8, 8).all()
    assert not resize_mask(torch.full((40, 40), 0.4), 8, 8).any()


def test_box_edges_round_to_latent_pixels() -> None:
    mask = box_mask((0.25, 0.0, 0.5, 0.5), 8, 24)
    assert mask.sum() == 4 * 6 and mask[:4, 6:12].all()


def test_background_takes_the_rest_and_regions_may_overlap() -> None:
    layout = Layout("sea", (Region("snow", box=(0, 0, 0.5, 1)), Region("night", box=(0.25, 0, 0.75, 1))))
    masks = layout.masks(8, 24)
    assert layout.prompts == ["sea", "snow", "night"]
    assert masks.shape == (3, 8, 24)
    assert torch.equal(masks[0], 1 - (masks[1:].sum(0) > 0).float())
    assert masks[1:].sum(0)[:, 6:12].eq(2).all()  # the overlap


@pytest.mark.parametrize(
    "box", [(0.5, 0, 1.2, 1), (-0.1, 0, 0.5, 1), (0.5, 0, 0.5, 1), (0, 0.8, 1, 0.2), (0, 0, 1)], ids=str
)
def test_boxes_outside_the_canvas_or_empty_are_rejected(box) -> None:
    with pytest.raises(ValueError, match="box"):
        Region("snow", box=box)


def test_masks_that_cover_nothing_and_unreadable_files_are_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"region 1 \('snow'\) covers no latent pixel"):
        Layout("sea", (Region("snow", mask=torch.zeros(10, 10)),)).masks(8, 24)
    with pytest.raises(ValueError, match="covers no latent pixel"):
        Layout("sea", (Region("snow", box=(0.5, 0, 0.51, 1)),)).masks(8, 24)  # thinner than a latent pixel
    (tmp_path / "mask.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read mask image"):
        Region.from_file("snow", tmp_path / "mask.png")
    with pytest.raises(ValueError, match="does not exist"):
        Region.from_file("snow", tmp_path / "missing.png")


@pytest.mark.parametrize("circular", [False, True])
def test_fusion_weights_each_prompt_by_its_mask_and_sum_to_one(circular: bool) -> None:
    layout = Layout("sea", (Region("snow", box=(0, 0, 0.5, 1)), Region("night", box=(0.25, 0, 0.625, 1))))
    masks = layout.masks(8, 24)
    windows = make_windows(8, 24, 8, 4, circular)
    stack = region_plan(masks, windows)
    # a prompt is denoised only on the windows its mask touches: the background not on the first two
    assert [w.left for w, k in zip(stack.windows, stack.prompts, strict=True) if k == 0] == (
        [8, 12, 16, 20] if circular else [8, 12, 16]
    )
    # every view of prompt k holds the value k + 1: the fused canvas is the per-pixel mask-weighted mean
    views = torch.cat([torch.full((1, 4, 8, 8), k + 1.0) for k in stack.prompts])
    fused = fuse(views, stack.windows, torch.Size((1, 4, 8, 24)), stack.weights)
    expected = (masks * torch.arange(1.0, 4.0)[:, None, None]).sum(0) / masks.sum(0)
    torch.testing.assert_close(fused[0], expected.expand(4, 8, 24))
    ones = fuse(torch.ones_like(views), stack.windows, torch.Size((1, 4, 8, 24)), stack.weights)
    assert torch.equal(ones, torch.ones_like(ones))  # the weights of every pixel sum to 1
