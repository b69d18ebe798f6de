"""The hybrid loss against a brute-force loop over explicit triplets."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from cytoedge.train.losses import HybridLoss, squared_distances, triplet_loss


def brute_force(emb: torch.Tensor, labels: list[int], margin: float, mining: str) -> float:
    n = len(labels)
    d = lambda i, j: float(((emb[i] - emb[j]) ** 2).sum())  # noqa: E731
    if mining == "batch_hard":
        hinges = []
        for a in range(n):
            pos = [d(a, p) for p in range(n) if p != a and labels[p] == labels[a]]
            neg = [d(a, q) for q in range(n) if labels[q] != labels[a]]
            if pos and neg:
                hinges.append(max(0.0, max(pos) - min(neg) + margin))
        return sum(hinges) / len(hinges) if hinges else 0.0
    losses = []
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]:
            losses.append(max(0.0, d(a, p) - d(a, q) + margin))
    positive = [v for v in losses if v > 0]
    return sum(positive) / len(positive) if positive else 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_brute_force(mining, seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(12, 6, generator=g) * 0.6
    labels = torch.randint(0, 3, (12,), generator=g)
    got, _ = triplet_loss(emb, labels, margin=1.0, mining=mining)
    want = brute_force(emb, labels.tolist(), 1.0, mining)
    assert want > 0
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_squared_distances_match_explicit_differences():
    emb = torch.randn(7, 5)
    want = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(emb), want, rtol=1e-5, atol=1e-5)
    assert torch.all(torch.diagonal(squared_distances(emb)) == 0)


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]])
def test_no_valid_triplet_gives_zero_and_keeps_graph(mining, labels):
    emb = torch.randn(4, 3, requires_grad=True)
    loss, _ = triplet_loss(emb, torch.tensor(labels), mining=mining)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()  # must not raise: the zero belongs to the graph
    assert torch.all(emb.grad == 0)


def test_hybrid_is_ce_plus_lambda_triplet():
    torch.manual_seed(0)
    logits, emb = torch.randn(8, 5), torch.randn(8, 4)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    parts = HybridLoss(lam=0.5, margin=1.0, label_smoothing=0.1)(logits, emb, y)
    ce = F.cross_entropy(logits, y, label_smoothing=0.1)
    trip, _ = triplet_loss(emb, y, 1.0, "batch_hard")
    assert parts.ce.item() == pytest.approx(ce.item())
    assert parts.total.item() == pytest.approx(ce.item() + 0.5 * trip.item())
    ce_only = HybridLoss(lam=0.0)(logits, emb, y)
    assert ce_only.triplet.item() == 0.0 and ce_only.total.item() == pytest.approx(ce.item())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        HybridLoss(mining="semi_hard")
    with pytest.raises(ValueError):
        HybridLoss(lam=-1)
