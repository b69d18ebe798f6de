"""The paper's hybrid loss: label-smoothed cross-entropy + lambda x triplet loss on the embeddings.

Triplet part as in Hermans et al., "In Defense of the Triplet Loss" (2017): squared
Euclidean distances within the batch, margin alpha, and

* ``mining="batch_hard"`` - per anchor, the farthest positive and the nearest
  negative; the hinge is averaged over anchors that have both;
* ``mining="batch_all"`` - every valid (anchor, positive, negative) triplet; the
  hinge is averaged over the triplets whose loss is positive.

A batch with no valid triplet (one class only, or no two images of a class) gives a
zero triplet term that still belongs to the autograd graph (STYLE.md 3).

The loss takes whatever embedding the net outputs; its scale decides whether lambda = 1 can
work. On the raw pooled features (the paper, ``--embedding raw``) squared distances are in the
tens to hundreds and the term swamps cross-entropy; on the L2-normalised embedding (the
default, :mod:`train.models.nets`) they lie in [0, 4] and a margin of 0.3 trains
(docs/measurements.md#measured-on-this-machine).

Outlier exposure (Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure",
ICLR 2019; optional, ``--negatives``): crops that are not cells are pushed towards a
uniform prediction by :func:`outlier_exposure_loss`, the cross-entropy from their
softmax to the uniform distribution (minus its floor ln K, so 0 = uniform).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cytoedge.train.config import MININGS


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    triplet: torch.Tensor
    active: float  # fraction of anchors (batch_hard) or valid triplets (batch_all) with positive hinge


def squared_distances(emb: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances, N x N, exactly zero on the diagonal."""
    sq = (emb * emb).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * emb @ emb.t()
    d = d.clamp_min(0.0)
    return d * (1.0 - torch.eye(len(emb), device=emb.device, dtype=emb.dtype))


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                 mining: str = "batch_hard") -> tuple[torch.Tensor, float]:
    """The triplet term and the fraction of active anchors/triplets."""
    if mining not in MININGS:
        raise ValueError(f"mining must be one of {MININGS}, got {mining!r}")
    n = len(labels)
    dist = squared_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    zero = (emb * 0.0).sum()  # keeps the graph when nothing is valid

    if mining == "batch_hard":
        valid = pos_mask.any(1) & neg_mask.any(1)
        if not valid.any():
            return zero, 0.0
        hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1).values
        hardest_neg = dist.masked_fill(~neg_mask, float("inf")).min(dim=1).values
        hinge = F.relu(hardest_pos - hardest_neg + margin)[valid]
        return hinge.mean(), float((hinge > 0).float().mean())

    # batch_all: loss[a, p, n] = d(a, p) - d(a, n) + margin over valid triplets
    valid3 = pos_mask[:, :, None] & neg_mask[:, None, :]
    if not valid3.any():
        return zero, 0.0
    hinge = F.relu(dist[:, :, None] - dist[:, None, :] + margin)[valid3]
    positive = hinge > 0
    active = float(positive.float().mean())
    if not positive.any():
        return zero, active
    return hinge[positive].mean(), active


def outlier_exposure_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean over non-cell crops of CE(uniform, softmax(logits)) - ln K: 0 when every prediction is uniform."""
    if len(logits) == 0:
        return (logits * 0.0).sum()
    k = logits.shape[1]
    return -(F.log_softmax(logits, dim=1).mean(dim=1)).mean() - math.log(k)


class HybridLoss(nn.Module):
    """``CE(label_smoothing) + lam * Triplet``; ``lam=0`` is the plain cross-entropy baseline."""

    def __init__(self, lam: float = 1.0, margin: float = 1.0, label_smoothing: float = 0.1,
                 mining: str = "batch_hard") -> None:
        super().__init__()
        if mining not in MININGS:
            raise ValueError(f"mining must be one of {MININGS}, got {mining!r}")
        if lam < 0 or margin < 0 or not 0 <= label_smoothing < 1:
            raise ValueError("need lam >= 0, margin >= 0 and 0 <= label_smoothing < 1")
        self.lam, self.margin, self.label_smoothing, self.mining = lam, margin, label_smoothing, mining

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> LossParts:
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.lam == 0:
            trip, active = (embedding * 0.0).sum(), 0.0
        else:
            trip, active = triplet_loss(embedding, labels, self.margin, self.mining)
        return LossParts(total=ce + self.lam * trip, ce=ce, triplet=trip, active=active)
