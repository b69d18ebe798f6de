"""Rejecting what the model was not trained on, from the embedding.

Every class has a centroid (mean embedding of its training images). A crop whose
embedding is farther (Euclidean distance) from *every* centroid than the threshold
- by default the 99th percentile of the training images' distances to their own
class centroid - is flagged ``unknown``. The same functions compute the centroids
at training time, recompute them per artifact at conversion time (an int8 model's
embedding space differs from the fp32 one), and apply them on the device.
"""

from __future__ import annotations

import numpy as np


def class_centroids(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes x D`` mean embedding per class (a class without samples gets NaNs)."""
    emb = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    out = np.full((num_classes, emb.shape[1]), np.nan)
    for k in range(num_classes):
        sel = labels == k
        if sel.any():
            out[k] = emb[sel].mean(axis=0)
    return out


def centroid_distances(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``N x K`` Euclidean distances from each embedding to each centroid."""
    e = np.asarray(embeddings, np.float64)
    c = np.asarray(centroids, np.float64)
    d2 = (e * e).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * e @ c.T
    return np.sqrt(np.clip(d2, 0.0, None))


def nearest_centroid(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest centroid, per embedding."""
    d = centroid_distances(embeddings, centroids)
    d = np.where(np.isnan(d), np.inf, d)
    idx = d.argmin(axis=1)
    return idx, d[np.arange(len(d)), idx]


def rejection_threshold(embeddings: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                        quantile: float = 0.99) -> float:
    """The ``quantile`` of each training image's distance to its own class centroid."""
    labels = np.asarray(labels)
    d = centroid_distances(embeddings, centroids)[np.arange(len(labels)), labels]
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no finite distances to compute a rejection threshold from")
    return float(np.quantile(d, quantile))


def fit_rejection(embeddings: np.ndarray, labels: np.ndarray, num_classes: int,
                  quantile: float = 0.99) -> tuple[np.ndarray, float]:
    """Centroids and threshold from training embeddings."""
    cents = class_centroids(embeddings, labels, num_classes)
    return cents, rejection_threshold(embeddings, labels, cents, quantile)
