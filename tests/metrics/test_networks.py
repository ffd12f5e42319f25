"""The metric networks: the demo world's (offline) and the code paths of the real ones that run offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from syncguide.errors import UsageError
from syncguide.metrics import MetricNetworks, clip_score, intra_lpips, intra_style_loss, real_networks
from syncguide.metrics.reference_networks import (
    VGG19_STYLE_LAYERS,
    InceptionFeatures,
    VGG19Style,
    load_inception,
    load_lpips,
    load_lpips_trunk,
    load_vgg19_style,
)


def test_demo_networks_shapes(demo: MetricNetworks) -> None:
    assert set(demo.names) == {"lpips", "style", "features", "clip"} and all(demo.names.values())
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 64, 64, generator=generator), torch.rand(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        distances = demo.distance(a * 2 - 1, torch.nn.functional.interpolate(b, 64) * 2 - 1)
        assert distances.shape == (3,) and (distances > 0).all()
        assert torch.equal(demo.distance(a * 2 - 1, a * 2 - 1), torch.zeros(3))
        maps = demo.style(a)
        assert [tuple(m.shape) for m in maps] == [(3, 32, 32, 32), (3, 32, 32, 32), (3, 64, 16, 16)]
        assert demo.features(b).shape == (3, 128)  # any size: resized to the judge's 64 px
    assert clip_score(a, ["snowy mountains"] * 3, demo.clip).shape == (3,)


def test_demo_networks_run_the_panorama_metrics(demo: MetricNetworks) -> None:
    panoramas = torch.rand(1, 3, 64, 192, generator=torch.Generator().manual_seed(1))
    assert intra_lpips(panoramas, demo.distance, 64).item() > 0
    assert intra_style_loss(panoramas, demo.style, 64).item() > 0
    assert intra_lpips(panoramas[..., :64].repeat(1, 1, 1, 3), demo.distance, 64).item() == 0


def test_metric_networks_need_every_name(demo: MetricNetworks) -> None:
    with pytest.raises(ValueError, match="missing clip"):
        MetricNetworks(demo.distance, demo.style, demo.features, demo.clip, {"lpips": "", "style": "", "features": ""})


def test_vgg19_style_maps() -> None:
    style = VGG19Style()
    maps = style(torch.rand(2, 3, 16, 16))
    assert [tuple(m.shape) for m in maps] == [
        (2, 64, 16, 16),
        (2, 64, 16, 16),
        (2, 128, 8, 8),
        (2, 128, 8, 8),
        (2, 256, 4, 4),
    ]
    assert (maps[0] < 0).any()  # conv outputs before their ReLU, as the reference's style losses see them
    assert list(VGG19_STYLE_LAYERS) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]


def test_vgg19_style_loads_a_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = VGG19Style()
    state = {f"features.{name}": value for name, value in source.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # a whole-model state dict carries more than the features
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = load_vgg19_style(tmp_path / "vgg19.pth")
    x = torch.rand(1, 3, 8, 8)
    assert all(torch.equal(m, n) for m, n in zip(loaded(x), source(x), strict=True))
    with pytest.raises(UsageError, match="vgg19_weights"):
        load_vgg19_style(tmp_path / "missing.pth")


def test_lpips_trunk_loads_a_torchvision_vgg16_state_dict(tmp_path: Path, random_lpips) -> None:
    state = {f"features.{name.split('.', 1)[1]}": v for name, v in random_lpips.net.state_dict().items()}
    torch.save(state, tmp_path / "vgg16.pth")
    loaded = load_lpips(tmp_path / "vgg16.pth")
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(a, b), random_lpips(a, b))
    with pytest.raises(KeyError, match=r"features\.0\.weight"):
        load_lpips_trunk(loaded, {})
    with pytest.raises(UsageError, match="lpips_weights"):
        load_lpips(tmp_path / "missing.pth")


def test_inception_features_preprocess_as_torchmetrics() -> None:
    seen = []

    def network(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return torch.zeros(x.shape[0], 2048, 1, 1)

    images = torch.rand(2, 3, 8, 8)
    assert InceptionFeatures(network)(images).shape == (2, 2048)
    assert seen[0].dtype == torch.uint8 and torch.equal(seen[0], (images * 255).byte())  # FID(normalize=True)
    with pytest.raises(UsageError, match="inception_weights"):
        load_inception("/nonexistent/pt_inception.pth")


def test_real_networks_fail_with_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"could not load the LPIPS-VGG trunk .* lpips_weights"):
        real_networks(lpips_weights=tmp_path / "missing.pth")
