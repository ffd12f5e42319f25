"""Top-k retrieval accuracy (SDG's content guidance; higher is better).

Each sample and every candidate guidance input are embedded by an encoder that did not guide sampling; a sample
succeeds at k if its own candidate is among the k candidates most cosine-similar to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from syncguide.metrics.base import Metric, cat_state

KS = (1, 5, 10, 20)


def _check(samples: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> None:
    if samples.ndim != 2 or candidates.ndim != 2 or samples.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"samples (N, D) and candidates (M, D) must share D; got {tuple(samples.shape)}, {tuple(candidates.shape)}"
        )
    if targets.shape != (samples.shape[0],) or targets.dtype.is_floating_point:
        raise ValueError(f"targets must be integer indices of shape ({samples.shape[0]},); got {tuple(targets.shape)}")
    if len(targets) and (targets.min() < 0 or targets.max() >= candidates.shape[0]):
        raise ValueError(f"targets must index candidates (0..{candidates.shape[0] - 1})")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers; got {tuple(ks)}")


def ranks(samples: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank ``(N,)`` of each sample's own candidate: how many candidates are strictly more similar (cosine).

    Ties count in the sample's favour.
    """
    similarity = F.normalize(samples.double(), dim=-1) @ F.normalize(candidates.double(), dim=-1).T
    own = similarity.gather(1, targets.long()[:, None].to(similarity.device))
    return (similarity > own).sum(dim=1)


def _hits(samples: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Successes ``(N, len(ks))`` (float64); k is clipped to the number of candidates M."""
    _check(samples, candidates, targets, ks)
    rank = ranks(samples, candidates, targets)
    return torch.stack([rank < min(k, candidates.shape[0]) for k in ks], dim=1).double()


@torch.no_grad()
def topk_retrieval(
    samples: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = KS
) -> dict[int, float]:
    """Top-k accuracy ``{k: fraction}`` of samples ``(N, D)`` whose own candidate (``targets`` ``(N,)``, indices into
    ``candidates`` ``(M, D)``) is among their k nearest candidates by cosine similarity; k is clipped to M."""
    hits = _hits(samples, candidates, targets, ks)
    return {int(k): float(v) for k, v in zip(ks, hits.mean(dim=0), strict=True)}


class TopKRetrieval(Metric):
    """Top-k retrieval accuracy over every sample seen; ``compute()`` returns ``{k: tensor}``.

    ``update(samples, candidates, targets)`` as :func:`topk_retrieval` (each call brings its own candidates).
    """

    higher_is_better = True
    name = "top-k retrieval accuracy"
    hits: list[torch.Tensor]

    def __init__(self, ks: Sequence[int] = KS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.add_state("hits", default=[], dist_reduce_fx="cat")

    def update(self, samples: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor) -> None:
        self.hits.append(_hits(samples.detach(), candidates.detach(), targets, self.ks))

    def compute(self) -> dict[int, torch.Tensor]:
        means = cat_state(self.hits, "samples").mean(dim=0)
        return dict(zip(self.ks, means, strict=True))
