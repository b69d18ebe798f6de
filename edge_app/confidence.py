"""Calibrated confidence: temperature scaling, the expected calibration error, reliability bins.

A network's softmax is usually over- or under-confident. Temperature scaling (Guo et
al., "On Calibration of Modern Neural Networks", 2017) divides the logits by one
number ``T`` fitted on held-out images (the validation split at conversion, per
artifact) so that, among crops given confidence ~0.8, about 80 % are right. It never
changes the top class. The device reports ``softmax(logits / T)``.

ECE: the crops are put in equal-width confidence bins; ECE is the share-weighted mean
of |accuracy - mean confidence| over the bins.

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
>>> round(expected_calibration_error(probs, np.array([0, 1, 0, 1]), bins=10), 4)
0.4
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_BINS = 10


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes at ``temperature``."""
    z = np.asarray(logits, np.float64) / float(temperature)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(z)), np.asarray(labels)]))


def _binned(probs: np.ndarray, labels: np.ndarray, bins: int) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """Bin edges and, per bin, (images, mean top-class confidence, accuracy)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        rows.append((n, float(conf[sel].mean()) if n else 0.0, float(correct[sel].mean()) if n else 0.0))
    return edges, rows


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> list[dict[str, Any]]:
    """Per confidence bin ``[lo, hi)``: images, mean confidence and accuracy of the top class (the diagram's data)."""
    edges, rows = _binned(probs, labels, bins)
    return [{"lo": round(float(edges[b]), 4), "hi": round(float(edges[b + 1]), 4), "n": n,
             "confidence": round(c, 4) if n else None, "accuracy": round(a, 4) if n else None}
            for b, (n, c, a) in enumerate(rows)]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE of the top-class confidence (0 = perfectly calibrated)."""
    _, rows = _binned(probs, labels, bins)
    total = sum(n for n, _, _ in rows)
    return float(sum(n * abs(a - c) for n, c, a in rows) / total) if total else 0.0
