"""The slide estimate: the abnormal fraction corrected for the model's error rates, with a 95 % interval.

A slide's raw count of cells *called* abnormal is not its abnormal fraction: with a
per-cell specificity of 90 %, a slide without one abnormal cell shows 10 % "abnormal".
Adjusted classify-and-count (quantification learning: Forman 2008; Saerens et al. 2002)
inverts the confusion matrix measured on validation finder crops (the card's
``error_rates``, :mod:`convert.validate`) on the clinical groups:

    q = C^T p,   C[i, j] = P(called group j | true group i)

``p`` (the true shares of normal, benign and abnormal among the classified cells) is the
point of the simplex closest to the observed shares ``q`` (least squares, exact on the
simplex's faces, so a slide can be estimated at exactly 0 %).

The 95 % interval carries both uncertainties: each draw takes the confusion rows from
their posterior (Dirichlet of the validation counts + 1/2) and the slide's shares from
theirs (Dirichlet of the slide's counts + 1/2), and solves again; the interval is the
2.5-97.5 % range of the draws. A finite validation set widens it: with ~500 validation
cells the false-abnormal rate itself is uncertain by about ±1.5 points, which no slide
size removes (docs/open-set.md: what narrows it). numpy only.

>>> rates = ErrorRates(("normal", "abnormal"), np.array([[900, 100], [10, 90]]))
>>> e = estimate(np.array([9100, 900]), rates, draws=400)  # 9 % called abnormal = what 0 % looks like
>>> round(e.fraction, 3), e.low, round(e.raw_fraction, 3)
(0.0, 0.0, 0.09)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from cytoedge.edge_app.classes import ABNORMAL, GROUPS, UNKNOWN

LEVEL = 0.95
DRAWS = 2000
PRIOR = 0.5  # Jeffreys: added to every count before a Dirichlet draw


@dataclass(frozen=True)
class ErrorRates:
    """Validation counts per (true group, called group) among the crops the device kept."""

    groups: tuple[str, ...]
    counts: np.ndarray  # G x G

    @classmethod
    def from_card(cls, error_rates: dict[str, Any], class_groups: dict[str, str]) -> "ErrorRates":
        """Collapse the card's class x class counts onto the clinical groups the classes belong to."""
        classes = list(error_rates["classes"])
        counts = np.asarray(error_rates["counts"], np.int64)
        if counts.shape != (len(classes), len(classes)) or (counts < 0).any():
            raise ValueError(f"error_rates.counts must be a {len(classes)} x {len(classes)} matrix of counts")
        groups = tuple(g for g in GROUPS if g != UNKNOWN and g in {class_groups.get(c) for c in classes})
        idx = [groups.index(class_groups[c]) for c in classes]
        g = np.zeros((len(groups), len(groups)), np.int64)
        np.add.at(g, (np.repeat(idx, len(idx)), np.tile(idx, len(idx))), counts.ravel())
        return cls(groups, g)

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class SlideEstimate:
    fraction: float  # corrected abnormal share of the classified cells
    low: float
    high: float
    raw_fraction: float  # cells called abnormal / classified cells
    classified: int
    validation_cells: int
    level: float = LEVEL
    draws: int = DRAWS

    def to_dict(self) -> dict[str, Any]:
        return {"abnormal_fraction": round(self.fraction, 5), "low": round(self.low, 5), "high": round(self.high, 5),
                "level": self.level, "raw_fraction": round(self.raw_fraction, 5), "classified_cells": self.classified,
                "validation_cells": self.validation_cells, "draws": self.draws,
                "method": "adjusted classify-and-count (validation confusion on finder crops inverted); interval: "
                          "Dirichlet draws of the confusion rows and of the slide's counts"}


def simplex_solve(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``argmin ||a p - q||`` over the probability simplex, batched: ``a`` B x G x G, ``q`` B x G -> B x G.

    Every face of the simplex is tried (2^G - 1 equality-constrained least-squares problems: G is 2 or 3
    clinical groups), and the best feasible one kept; zeros are exact.

    >>> simplex_solve(np.eye(2)[None], np.array([[1.2, -0.2]])).round(6).tolist()
    [[1.0, 0.0]]
    """
    a, q = np.asarray(a, np.float64), np.asarray(q, np.float64)
    b, g = q.shape
    best, best_r = np.full((b, g), np.nan), np.full(b, np.inf)
    for size in range(1, g + 1):
        for face in combinations(range(g), size):
            f = list(face)
            af = a[:, :, f]  # B x G x s
            k = np.zeros((b, size + 1, size + 1))
            k[:, :size, :size] = 2 * np.einsum("bgi,bgj->bij", af, af)
            k[:, :size, size] = k[:, size, :size] = 1.0
            rhs = np.concatenate([2 * np.einsum("bgi,bg->bi", af, q), np.ones((b, 1))], axis=1)
            k[:, :size, :size] += 1e-12 * np.eye(size)
            sol = np.linalg.solve(k, rhs[..., None])[..., 0][:, :size]
            ok = (sol >= -1e-12).all(axis=1)
            p = np.zeros((b, g))
            p[:, f] = np.clip(sol, 0.0, None)
            r = ((np.einsum("bgi,bi->bg", a, p) - q) ** 2).sum(axis=1)
            take = ok & (r < best_r - 1e-15)
            best[take], best_r[take] = p[take], r[take]
    return best


def estimate(called: np.ndarray, rates: ErrorRates, *, draws: int = DRAWS, level: float = LEVEL,
             seed: int = 0, target: str = ABNORMAL) -> SlideEstimate:
    """``called``: the slide's classified cells per group of ``rates.groups`` (cells called that group)."""
    called = np.asarray(called, np.float64)
    n = int(called.sum())
    t = rates.groups.index(target)
    c = rates.counts.astype(np.float64)
    c_hat = (c + 1e-9) / (c + 1e-9).sum(axis=1, keepdims=True)
    raw = float(called[t] / n) if n else 0.0
    if n == 0:
        return SlideEstimate(0.0, 0.0, 1.0, 0.0, 0, rates.n, level, draws)
    point = float(simplex_solve(c_hat.T[None], (called / n)[None])[0, t])
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.dirichlet(row + PRIOR, size=draws) for row in c], axis=1)  # draws x G(true) x G(called)
    q = rng.dirichlet(called + PRIOR, size=draws)
    p = simplex_solve(np.transpose(rows, (0, 2, 1)), q)[:, t]
    lo, hi = np.quantile(p, [(1 - level) / 2, (1 + level) / 2])
    return SlideEstimate(point, float(lo), float(hi), raw, n, rates.n, level, draws)
