"""The papers' metric networks: LPIPS-VGG, VGG19 style features, Inception-v3 pool3 (torchmetrics' FID network).

Each loads from a local file or downloads (torchvision / torch-fidelity release URLs); a failure is one
:class:`~syncguide.errors.UsageError` naming the argument that gives a local file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from syncguide.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_STYLE_LAYERS = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10}
"""Gatys' style layers as indices into torchvision's ``vgg19().features``."""


@contextlib.contextmanager
def loading(what: str, argument: str) -> Iterator[None]:
    """Turn any failure to load ``what`` into one UsageError that says which ``argument`` gives a local file."""
    try:
        yield
    except Exception as error:
        text = str(error).strip()
        first = text.splitlines()[0][:160] if text else ""  # torch.load's errors run to a dozen lines: one line
        raise UsageError(
            f"could not load {what} ({type(error).__name__}: {first}); "
            f"give a local weights file with {argument}, or run where the download works"
        ) from error


def _state(path: str | Path | None, url: str) -> dict[str, torch.Tensor]:
    if path is None:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
    return torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)


class VGG19Style(nn.Module):
    """VGG19 style features of images ``(B, 3, H, W)`` in [0, 1]: ImageNet normalisation, then the conv outputs
    (before their ReLU, as SyncDiffusion's ``eval_style_loss.py``, from PyTorch's neural-style tutorial, inserts
    its style losses) at conv1_1, conv1_2, conv2_1, conv2_2, conv3_1: 64, 64, 128, 128, 256 channels at full,
    full, 1/2, 1/2 and 1/4 resolution.

    Built with random weights; :func:`load_vgg19_style` loads the ImageNet ones.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = [64, 64, "pool", 128, 128, "pool", 256]
        layers: list[nn.Module] = []
        previous = 3
        for width in widths:
            if width == "pool":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers += [nn.Conv2d(previous, int(width), 3, padding=1), nn.ReLU()]
            previous = int(width)
        self.features = nn.Sequential(*layers[:-1])  # indices match torchvision's vgg19().features[:11]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        taps = set(VGG19_STYLE_LAYERS.values())
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                maps.append(x)
        return maps

    def load_vgg19(self, state: dict[str, torch.Tensor]) -> VGG19Style:
        """Load the conv weights from a torchvision VGG19 state dict (keys ``features.<i>.weight|bias``)."""
        names = self.features.state_dict()
        self.features.load_state_dict({name: state[f"features.{name}"] for name in names})
        return self


def load_vgg19_style(weights: str | Path | None = None, device: torch.device | str = "cpu") -> VGG19Style:
    """:class:`VGG19Style` with torchvision's IMAGENET1K_V1 VGG19 weights, from the local state-dict file
    ``weights`` (``torch.load(..., weights_only=True)``) or downloaded when None."""
    from torchvision.models import VGG19_Weights

    with loading("the VGG19 weights", "vgg19_weights"):
        return VGG19Style().load_vgg19(_state(weights, VGG19_Weights.IMAGENET1K_V1.url)).to(device)


def load_lpips(weights: str | Path | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """LPIPS-VGG v0.1 (the lpips package); its VGG16 trunk from the torchvision VGG16 state-dict file ``weights``,
    or from torchvision's download cache when None. A distance on images in [-1, 1], ``(B, 1, 1, 1)``."""
    from torchvision.models import VGG16_Weights

    from syncguide.guidance.perceptual import lpips_vgg

    with loading("the LPIPS-VGG trunk (torchvision VGG16)", "lpips_weights"):
        if weights is None:
            return lpips_vgg(device)
        module = lpips_vgg(pretrained_trunk=False)
        load_lpips_trunk(module, _state(weights, VGG16_Weights.IMAGENET1K_V1.url))
        return module.to(device)


def load_lpips_trunk(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a torchvision VGG16 state dict (``features.<i>.*``) into an ``lpips.LPIPS(net="vgg")`` trunk."""
    names = module.net.state_dict()  # "slice<k>.<i>.weight": <i> is the index into vgg16().features
    module.net.load_state_dict({name: state[f"features.{name.split('.', 1)[1]}"] for name in names})


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features ``(B, 2048)`` of images ``(B, 3, H, W)`` in [0, 1], preprocessed exactly as
    torchmetrics' FID with ``normalize=True``: ``(images * 255).byte()`` (values clamped to [0, 1] first), then
    the network resizes to 299 and rescales itself."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception((images.clamp(0, 1) * 255).byte()).reshape(images.shape[0], -1)


def load_inception(weights: str | Path | None = None, device: torch.device | str = "cpu") -> InceptionFeatures:
    """torchmetrics' ``NoTrainInceptionV3("inception-v3-compat")`` pool3 (the FID network), from the local
    torch-fidelity weights file ``weights`` or downloaded from torch-fidelity's release when None."""
    with loading("the Inception-v3 (FID) weights", "inception_weights"):
        if weights is not None and not Path(weights).expanduser().is_file():
            raise FileNotFoundError(f"no such file: {weights}")
        from torchmetrics.image.fid import NoTrainInceptionV3

        path = None if weights is None else str(Path(weights).expanduser())
        network = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path
        )
        return InceptionFeatures(network).to(device)
