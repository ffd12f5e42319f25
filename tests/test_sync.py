import pytest
import torch

from syncguide.guidance.perceptual import per_image
from syncguide.guidance.sync import SyncSchedule, synchronize
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.tiling import anchor_index, crop_all, make_windows


def test_schedule_weights_follow_the_paper() -> None:
    schedule = SyncSchedule(weight=20, decay=0.95, steps=10, every=2)
    weights = [schedule.weight_at(i) for i in range(12)]
    assert weights[0] == 0 and weights[1] == pytest.approx(20 * 0.95) and weights[9] == pytest.approx(20 * 0.95**9)
    assert [i for i, w in enumerate(weights) if w > 0] == [1, 3, 5, 7, 9]
    assert all(SyncSchedule(weight=20).weight_at(i) > 0 for i in range(50))


@pytest.mark.parametrize("field", ["weight", "decay", "steps"])
def test_schedule_rejects_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"sync_{field} must be >= 0"):
        SyncSchedule(**{field: -1})
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        SyncSchedule(every=0)


@pytest.fixture
def setting(pipe):
    """Noisy window latents of a 64 x 192 canvas at the 3rd of 10 steps, and the x0-image function."""
    model, scheduler = pipe.backbone, pipe.scheduler
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[2]
    windows = make_windows(8, 24, 8, 4)
    latents = torch.randn(1, 4, 8, 24, generator=torch.Generator().manual_seed(0))
    embeds = model.encode_prompt(["a photo of mountains"], [""]).repeat(len(windows))
    return crop_all(latents, windows), windows, x0_images(model, scheduler, t, embeds, len(windows))


def x0_images(model, scheduler, t, embeds, n: int):
    """``to_image(x, rows)``: the decoded x0 prediction in [0, 1] of rows ``rows`` of an n-row stack."""
    denoiser = WindowDenoiser(model, scheduler, embeds, 7.5, n, torch.zeros(n, 2, dtype=torch.long))
    return lambda x, rows: denoiser.images(x, rows, t)


def distances(views, windows, to_image, loss) -> torch.Tensor:
    rows = torch.arange(len(windows))
    with torch.no_grad():
        images = to_image(views, rows) * 2 - 1
    anchor = anchor_index(windows)
    return per_image(loss, images, images[anchor : anchor + 1].expand_as(images))


def test_one_sync_step_lowers_the_loss_to_the_anchor(setting, random_lpips) -> None:
    views, windows, to_image = setting
    anchor = anchor_index(windows)
    before = distances(views, windows, to_image, random_lpips)
    synced = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=2)
    after = distances(synced, windows, to_image, random_lpips)
    others = [j for j in range(len(windows)) if j != anchor]
    assert (after[others] < before[others]).all(), (before, after)
    assert torch.equal(synced[anchor], views[anchor])


def test_anchor_gets_no_gradient_work(setting, random_lpips) -> None:
    views, windows, to_image = setting
    anchor = anchor_index(windows)
    calls = []

    def spy(x, rows):
        calls.append((rows.tolist(), torch.is_grad_enabled()))
        return to_image(x, rows)

    synchronize(views, len(windows), anchor, spy, random_lpips, weight=1.0, batch_size=2)
    assert calls[0] == ([anchor], False)
    assert all(grad and anchor not in rows for rows, grad in calls[1:])
    assert sorted(r for rows, _ in calls[1:] for r in rows) == [j for j in range(len(windows)) if j != anchor]


def test_batching_and_checkpointing_do_not_change_the_step(pipe, setting, random_lpips) -> None:
    views, windows, to_image = setting
    anchor = anchor_index(windows)
    one = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=1)
    many = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=4)
    with pipe.backbone.gradient_checkpointing(True):
        checkpointed = synchronize(views, len(windows), anchor, to_image, random_lpips, weight=20.0, batch_size=4)
    assert not pipe.unet.is_gradient_checkpointing  # restored after the block
    # the gradients agree to float32 round-off, scaled by the weight 20
    torch.testing.assert_close(many, one, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(checkpointed, many, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(one, views, atol=1e-3)


def test_any_callable_is_a_perceptual_loss(pipe, setting) -> None:
    views, windows, to_image = setting

    def mse(a, b):
        return ((a - b) ** 2).mean(dim=(1, 2, 3))

    synced = synchronize(views, len(windows), anchor_index(windows), to_image, mse, weight=5.0, batch_size=3)
    assert distances(synced, windows, to_image, mse).sum() < distances(views, windows, to_image, mse).sum()
    with pytest.raises(ValueError, match="one distance per image"):
        synchronize(views, len(windows), 1, to_image, lambda a, b: mse(a, b).mean(), weight=1.0, batch_size=2)
