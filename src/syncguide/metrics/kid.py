"""KID (fidelity and diversity; lower is better): unbiased MMD^2 with a polynomial kernel, averaged over subsets.

Exactly torchmetrics' ``KernelInceptionDistance`` (same kernel, estimator, subset draws and population std), with
one difference: the subset size adapts to small sets, ``min(subset_size, N, M)``, where torchmetrics raises.
Our own implementation rather than a wrapper: the eval command computes each image's features once, caches them
for resumable runs and shares them between FID, KID and GIQA. Computed in float64.

References:
    Bińkowski et al., "Demystifying MMD GANs" (ICLR 2018).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from syncguide.metrics.base import Features
from syncguide.metrics.fid import FeatureSets


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float | None, coef: float) -> torch.Tensor:
    """``(gamma * x y^T + coef) ** degree`` ``(N, M)``; gamma defaults to 1 / D."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def unbiased_mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> torch.Tensor:
    """The unbiased MMD^2 estimate from the kernel matrices of two sets of the same size m >= 2."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, D) with N >= 2; got {tuple(x.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature size D; got {a.shape[1]} and {b.shape[1]}")


@torch.no_grad()
def kid(
    a: torch.Tensor,
    b: torch.Tensor,
    subset_size: int = 1000,
    subsets: int = 100,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID ``(mean, std)`` over ``subsets`` random subsets between features ``a`` ``(N, D)`` (generated) and ``b``
    ``(M, D)`` (reference).

    Each subset draws ``m = min(subset_size, N, M)`` rows of each set without replacement (``b``'s permutation first,
    then ``a``'s, from a CPU generator seeded with ``seed``: the draws torchmetrics makes after
    ``torch.manual_seed(seed)``). The std is the population std over subsets (torchmetrics' ``unbiased=False``).
    """
    _check(a, b)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"subsets must be >= 1 and subset_size >= 2; got {subsets} and {subset_size}")
    m = min(subset_size, a.shape[0], b.shape[0])
    generator = torch.Generator().manual_seed(seed)
    a, b = a.double(), b.double()
    values = []
    for _ in range(subsets):
        real = b[torch.randperm(b.shape[0], generator=generator)[:m].to(b.device)]
        fake = a[torch.randperm(a.shape[0], generator=generator)[:m].to(a.device)]
        kernels = [polynomial_kernel(x, y, degree, gamma, coef) for x, y in ((real, real), (real, fake), (fake, fake))]
        values.append(unbiased_mmd2(*kernels))
    scores = torch.stack(values)
    return float(scores.mean()), float(scores.std(unbiased=False))


KID_OPTIONS: tuple[str, ...] = tuple(inspect.signature(kid).parameters)[2:]
"""The options of :func:`kid` (``subset_size`` ... ``seed``), which :class:`KID` passes on; their defaults are
:func:`kid`'s."""


class KID(FeatureSets):
    """KID (lower is better) between the generated (``real=False``) and reference (``real=True``) images seen;
    ``compute()`` returns ``(mean, std)`` tensors. Arguments as :func:`kid`."""

    higher_is_better = False
    name = "KID"

    def __init__(self, features_net: Features | None, **kwargs: Any) -> None:
        """``kwargs`` named like :func:`kid`'s options (:data:`KID_OPTIONS`) go to :func:`kid`; the rest to
        :class:`~syncguide.metrics.fid.FeatureSets`."""
        self.options = {name: kwargs.pop(name) for name in KID_OPTIONS if name in kwargs}
        super().__init__(features_net, **kwargs)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = kid(*self._sets(), **self.options)
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
