"""The slide estimate: adjusted classify-and-count and its interval (edge_app.estimate)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cytoedge.edge_app.estimate import ErrorRates, estimate, simplex_solve

GROUPS3 = ("normal", "benign", "abnormal")


def test_simplex_solve_is_the_best_point_of_the_simplex():
    """Against a brute-force grid over the simplex (step 0.005): never worse than the grid's best."""
    rng = np.random.default_rng(0)
    grid = np.array([(a, b, 1 - a - b) for a, b in itertools.product(np.arange(0, 1.0001, 0.005), repeat=2)
                     if a + b <= 1.0000001])
    for _ in range(20):
        a = rng.dirichlet(np.ones(3) * 2, size=3).T  # columns: P(called | true)
        q = rng.dirichlet(np.ones(3))
        p = simplex_solve(a[None], q[None])[0]
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-9
        best = ((grid @ a.T - q) ** 2).sum(axis=1).min()
        assert ((a @ p - q) ** 2).sum() <= best + 1e-12


def test_exact_counts_give_back_the_true_shares():
    c = np.array([[800, 60, 140], [50, 400, 50], [5, 15, 180]])
    rates = ErrorRates(GROUPS3, c)
    p_true = np.array([0.90, 0.07, 0.03])
    called = np.round(5000 * p_true @ (c / c.sum(1, keepdims=True))).astype(int)
    e = estimate(called, rates, draws=200)
    assert abs(e.fraction - 0.03) < 0.003 and e.raw_fraction > 0.15  # raw: 14 % of normal cells called abnormal
    assert e.low <= 0.03 <= e.high


def test_interval_covers_the_truth_and_widens_with_fewer_validation_cells():
    """Slides drawn from a known confusion matrix: the 95 % interval covers the truth on >= 85 % of 60 slides
    (its rows' uncertainty included: the validation counts are themselves a draw), and is wider with a
    validation set a tenth the size."""
    rng = np.random.default_rng(1)
    true_c = np.array([[0.88, 0.04, 0.08], [0.10, 0.80, 0.10], [0.03, 0.07, 0.90]])
    covered, widths = 0, {}
    for val_n in (300, 3000):
        w = []
        for s in range(60 if val_n == 300 else 10):
            counts = np.stack([rng.multinomial(val_n, row) for row in true_c])
            frac = [0.0, 0.01, 0.05, 0.1][s % 4]
            p = np.array([0.85 * (1 - frac), 0.15 * (1 - frac), frac])
            called = rng.multinomial(3000, p @ true_c)
            e = estimate(called, ErrorRates(GROUPS3, counts), draws=400, seed=s)
            w.append(e.high - e.low)
            if val_n == 300:
                covered += e.low - 1e-12 <= frac <= e.high + 1e-12
        widths[val_n] = float(np.mean(w))
    assert covered >= 51
    assert widths[3000] < widths[300]


def test_error_rates_collapse_classes_onto_groups():
    classes = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
    groups = {"superficial_intermediate": "normal", "parabasal": "normal", "metaplastic": "benign",
              "koilocytotic": "abnormal", "dyskeratotic": "abnormal"}
    counts = np.arange(25).reshape(5, 5)
    r = ErrorRates.from_card({"classes": classes, "counts": counts.tolist()}, groups)
    assert r.groups == GROUPS3 and r.n == counts.sum()
    assert r.counts[0, 0] == counts[:2, :2].sum() and r.counts[2, 0] == counts[3:, :2].sum()
    with pytest.raises(ValueError, match="matrix"):
        ErrorRates.from_card({"classes": classes, "counts": [[1, 2]]}, groups)
