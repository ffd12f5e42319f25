from __future__ import annotations

import pytest
import torch

from syncguide.metrics import TopKRetrieval, topk_retrieval


def test_identity_embeddings_retrieve_themselves() -> None:
    embeddings = torch.eye(6)
    assert topk_retrieval(embeddings, embeddings, torch.arange(6), ks=(1, 5)) == {1: 1.0, 5: 1.0}


def test_constructed_ranks() -> None:
    candidates = torch.eye(4)  # sample i is closest to candidate order[i], its own candidate ranks as below
    samples = torch.tensor([[1.0, 0.5, 0.2, 0.0], [0.9, 1.0, 0.0, 0.0], [0.3, 0.2, 0.1, 1.0]])
    targets = torch.tensor([0, 0, 2])  # ranks 0, 1, 3
    result = topk_retrieval(samples, candidates, targets, ks=(1, 2, 3, 20))
    assert result == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 20: 1.0})  # k = 20 clipped to the 4 candidates


def test_shuffled_case_with_known_answer() -> None:
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(10, 8, generator=generator)
    permutation = torch.randperm(10, generator=generator)
    samples = candidates[permutation] * 3.0  # scaled copies: cosine 1 with their own candidate
    assert topk_retrieval(samples, candidates, permutation, ks=(1,)) == {1: 1.0}
    wrong = (permutation + 1) % 10
    assert topk_retrieval(samples, candidates, wrong, ks=(1,)) == {1: 0.0}


def test_class_accumulates_and_errors() -> None:
    generator = torch.Generator().manual_seed(1)
    samples, candidates = torch.randn(9, 5, generator=generator), torch.randn(6, 5, generator=generator)
    targets = torch.randint(0, 6, (9,), generator=generator)
    metric = TopKRetrieval(ks=(1, 3))
    for s, t in zip(samples.split(4), targets.split(4), strict=True):
        metric.update(s, candidates, t)
    expected = topk_retrieval(samples, candidates, targets, ks=(1, 3))
    assert {k: float(v) for k, v in metric.compute().items()} == pytest.approx(expected)
    with pytest.raises(ValueError, match="targets must index candidates"):
        topk_retrieval(samples, candidates, targets + 6)
    with pytest.raises(ValueError, match="must share D"):
        topk_retrieval(samples, candidates[:, :3], targets)
