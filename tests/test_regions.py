import torch

from reference import region_multidiffusion
from syncguide.layout import Layout, Region
from syncguide.sampling.plan import region_plan
from syncguide.tiling import crop_all, make_windows

BACKGROUND, SNOW = "a photo of the sea at day", "a photo of snow mountains at night"
LAYOUT = Layout(BACKGROUND, (Region(SNOW, box=(0.0, 0.0, 0.5, 1.0)), Region("hills", box=(0.25, 0.0, 0.75, 0.5))))


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 8, 24, generator=torch.Generator().manual_seed(seed))


def run_layout(pipe, layout: Layout, latents: torch.Tensor, **kwargs) -> torch.Tensor:
    args = dict(num_inference_steps=4, stride=4, output_type="latent", sync_weight=0.0, bootstrap_fraction=0.0)
    args.update(kwargs)
    return pipe.layout(layout, height=64, width=192, latents=latents.clone(), **args).images


def test_sync_weight_zero_is_region_multidiffusion_bit_for_bit(pipe, random_lpips) -> None:
    latents = noise()
    reference = region_multidiffusion(pipe, LAYOUT.prompts, LAYOUT.masks(8, 24), latents.clone(), 4, 7.5, 4)
    ours = run_layout(pipe, LAYOUT, latents)
    assert torch.equal(ours, reference)
    same = run_layout(pipe, LAYOUT, latents, sync_weight=20.0, sync_steps=0, perceptual_loss=random_lpips)
    assert torch.equal(same, reference)
    synced = run_layout(pipe, LAYOUT, latents, sync_weight=20.0, perceptual_loss=random_lpips)
    assert not torch.allclose(synced, reference, atol=1e-4)  # the sync step does change the result


def test_view_batching_mixes_prompts_without_changing_the_result(pipe) -> None:
    latents = noise()
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        many = run_layout(pipe, LAYOUT, latents, view_batch_size=32)
    finally:
        hook.remove()
    assert calls == [2 * 11] * 4  # 11 (prompt, window) rows (3 background + 3 snow + 5 hills), CFG doubled
    torch.testing.assert_close(many, run_layout(pipe, LAYOUT, latents), rtol=1e-4, atol=5e-5)


def test_region_covering_everything_is_the_panorama_of_its_prompt(pipe, random_lpips) -> None:
    latents = noise()
    layout = Layout(BACKGROUND, (Region(SNOW, box=(0, 0, 1, 1)),))
    common = dict(num_inference_steps=4, stride=4, output_type="latent", generator=torch.Generator().manual_seed(0))
    plain = pipe(SNOW, height=64, width=192, latents=latents.clone(), sync_weight=0.0, **common).images
    ours = pipe.layout(layout, height=64, width=192, latents=latents.clone(), sync_weight=0.0, **common).images
    assert torch.equal(ours, plain)  # bootstrapping (default 20%) is on: there is no outside to replace
    synced = dict(sync_weight=20.0, sync_steps=2, perceptual_loss=random_lpips, **common)
    plain = pipe(SNOW, height=64, width=192, latents=latents.clone(), **synced).images
    ours = pipe.layout(layout, height=64, width=192, latents=latents.clone(), sync_regions=True, **synced).images
    assert torch.equal(ours, plain)  # the region's own anchor is the panorama's


def test_bootstrapping_replaces_only_outside_foreground_masks_and_only_in_its_steps(pipe) -> None:
    latents, inputs, canvases = noise(), [], [noise()]
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0].chunk(2)[0].clone()))

    def record(pipe, i, t, tensors):
        canvases.append(tensors["latents"].clone())
        return tensors

    try:
        run_layout(
            pipe, LAYOUT, latents, view_batch_size=32, bootstrap_fraction=0.5, callback_on_step_end=record,
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip
    finally:
        hook.remove()
    stack = region_plan(LAYOUT.masks(8, 24), make_windows(8, 24, 8, 4))
    inside = stack.weights.bool().expand(-1, 4, -1, -1)
    foreground = torch.tensor(stack.prompts) > 0
    for i, seen in enumerate(inputs):
        expected = crop_all(canvases[i], stack.windows)  # DDIM's scale_model_input is the identity
        same = seen == expected
        assert same[~foreground].all() and same[foreground][inside[foreground]].all()
        outside = same[foreground][~inside[foreground]]
        assert not outside.any() if i < 2 else outside.all(), i  # 2 = 50% of 4 steps


def test_bootstrap_colours_come_from_the_generator(pipe) -> None:
    latents = noise()

    def seeded(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return run_layout(pipe, LAYOUT, latents, bootstrap_fraction=0.5, generator=generator)

    assert torch.equal(seeded(0), seeded(0))
    assert not torch.equal(seeded(0), seeded(1))
    assert not torch.allclose(seeded(0), run_layout(pipe, LAYOUT, latents), atol=1e-4)  # bootstrapping acts
