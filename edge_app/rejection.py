"""Rejecting what the model was not trained on: class centroids and the open-set score.

The open-set score (:class:`OpenSetScore`, fitted by :func:`fit_open_set`) says how
unlike every class the model knows a crop is; above its threshold the crop is
``unknown`` (debris, a bubble, a clump, an out-of-focus cell, a black frame ...). It
is fitted per artifact at conversion, on that file's own outputs (an int8 model's
embedding space differs from the fp32 one), stored in the model card, and applied on
the device with numpy alone. The kinds (``SCORES``) and the measurement that chose
the default are in docs/open-set.md#rejecting-what-is-not-a-cell-and-calibrated-confidence
(``python -m cytoedge.benchmarks.open_set``).

The centroid helpers below (mean embedding per class, Euclidean distances, the
quantile threshold of the training images' own-class distances) are what
``edge-train`` records in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoedge.edge_app.crop_features import FEATURES


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


# --- the open-set score: how unlike every known cell a crop is -----------------------------------------
#
# One score per artifact, fitted on that artifact's own outputs. Higher = less like a cell of a
# known class; above the threshold = "unknown". The threshold is the (1 - cell_rejection) quantile
# of held-out cells' scores (the validation split at conversion), so that share of true cells is
# rejected.

SCORES = ("mahalanobis+image", "mahalanobis", "image", "centroid", "energy", "max_logit", "msp")
DEFAULT_SCORE = "mahalanobis+image"
DEFAULT_RANK = 32  # principal directions of the within-class covariance kept exactly (the rest: one variance)
DEFAULT_CELL_REJECTION = 0.05  # share of true (validation) cells the threshold may reject
PARTS = ("embedding", "image")  # what a Mahalanobis part measures: the artifact's embedding, the crop's picture


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


@dataclass
class TiedGaussian:
    """Class means and one covariance shared by all classes (tied), as probabilistic PCA: the ``r``
    largest principal directions of the within-class scatter keep their own variances, every other
    direction gets one (their mean). :meth:`distance` is the Mahalanobis distance to the nearest mean."""

    means: np.ndarray  # K x D
    components: np.ndarray  # r x D, orthonormal rows
    variances: np.ndarray  # r
    residual_variance: float

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, num_classes: int, rank: int) -> "TiedGaussian":
        x = np.asarray(x, np.float64)
        labels = np.asarray(labels)
        means = class_centroids(x, labels, num_classes)
        if np.isnan(means).any():
            raise ValueError("every class needs training images to fit the open-set score")
        centred = x - means[labels]
        dof = max(1, len(x) - num_classes)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        var = sv ** 2 / dof
        floor = 1e-6 * float(var[0]) if len(var) and var[0] > 0 else 1e-12
        r = int(max(1, min(rank, int((var > floor).sum()), x.shape[1] - 1)))
        total = float((centred ** 2).sum() / dof)
        residual = max((total - float(var[:r].sum())) / (x.shape[1] - r), floor)
        return cls(means, vt[:r], np.maximum(var[:r], floor), residual)

    def distance(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        d2 = centroid_distances(x, self.means) ** 2  # N x K
        proj = (x @ self.components.T)[:, None, :] - (self.means @ self.components.T)[None, :, :]  # N x K x r
        along = proj ** 2
        d2 = (along / self.variances).sum(axis=2) + np.clip(d2 - along.sum(axis=2), 0.0, None) / self.residual_variance
        return np.sqrt(d2.min(axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {"means": _rounded(self.means), "components": _rounded(self.components),
                "variances": _rounded(self.variances), "residual_variance": float(self.residual_variance)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], dim: int, num_classes: int, where: str) -> "TiedGaussian":
        g = cls(_matrix(d, "means", num_classes, dim, where), _matrix(d, "components", None, dim, where),
                np.asarray(d.get("variances"), np.float64).reshape(-1), float(d.get("residual_variance", 0.0)))
        if len(g.variances) != len(g.components) or not (g.variances > 0).all() or not g.residual_variance > 0:
            raise ValueError(f"{where}: variances must be positive, one per component")
        return g


@dataclass
class OpenSetScore:
    """A fitted open-set score and its threshold, as the model card stores it per artifact.

    * ``mahalanobis``: :class:`TiedGaussian` distance of the artifact's embedding;
    * ``image``: :class:`TiedGaussian` distance of the crop's picture statistics
      (:mod:`edge_app.crop_features`: exposure, stain, focus, noise, centring, nuclei ...);
    * ``mahalanobis+image``: both, each divided by its ``scales`` (its own validation
      quantile), and the larger counts: a crop must look like a cell *and* like a class;
    * ``centroid``: Euclidean distance of the embedding to the nearest class mean;
    * ``energy``: ``-logsumexp(logits)``; ``max_logit``: ``-max(logits)``; ``msp``: ``-max(softmax)``.
    """

    score: str
    threshold: float = float("inf")
    embedding: TiedGaussian | None = None
    image: TiedGaussian | None = None
    means: np.ndarray | None = None  # centroid
    scales: dict[str, float] = field(default_factory=dict)  # per part, mahalanobis+image
    cell_rejection: float = DEFAULT_CELL_REJECTION
    fitted: dict[str, Any] = field(default_factory=dict)  # what it was fitted on (counts, rank)
    image_size: int | None = None  # the image statistics' copy of the crop (crop_features' size; None: as given)

    @property
    def needs_image(self) -> bool:
        """Whether :meth:`__call__` needs the crops' :func:`~edge_app.crop_features.crop_features`."""
        return self.image is not None

    def parts(self, logits: np.ndarray, embeddings: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out = {}
        if self.embedding is not None:
            out["embedding"] = self.embedding.distance(embeddings)
        if self.image is not None:
            if image is None:
                raise ValueError("this open-set score needs the crops' image features (edge_app.crop_features)")
            out["image"] = self.image.distance(image)
        return out

    def __call__(self, logits: np.ndarray, embeddings: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """Score per crop (``N``) from the artifact's dequantised logits and embeddings (and ``image`` features)."""
        logits = np.asarray(logits, np.float64)
        if self.score == "energy":
            return -_logsumexp(logits)
        if self.score == "max_logit":
            return -logits.max(axis=1)
        if self.score == "msp":
            z = logits - logits.max(axis=1, keepdims=True)
            return -1.0 / np.exp(z).sum(axis=1)
        if self.score == "centroid":
            return nearest_centroid(embeddings, self.means)[1]
        parts = self.parts(logits, embeddings, image)
        if len(parts) == 1:
            return next(iter(parts.values()))
        return np.max([v / self.scales[k] for k, v in parts.items()], axis=0)

    def unknown(self, logits: np.ndarray, embeddings: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        return ~(self(logits, embeddings, image) <= self.threshold)  # NaN is unknown too

    # -- the card's JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"score": self.score, "threshold": _finite_or_none(self.threshold),
                             "cell_rejection": self.cell_rejection, "fitted": self.fitted}
        if self.means is not None:
            d["means"] = _rounded(self.means)
        for name in PARTS:
            part = getattr(self, name)
            if part is not None:
                d[name] = part.to_dict()
                if name == "image":
                    d[name]["features"] = list(FEATURES)
                    if self.image_size is not None:
                        d[name]["size"] = int(self.image_size)
        if self.scales:
            d["scales"] = {k: float(v) for k, v in self.scales.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], embedding_dim: int, num_classes: int) -> "OpenSetScore":
        """Read and check a card entry; a wrong field is a ``ValueError`` (the card reader names it)."""
        kind = d.get("score")
        if kind not in SCORES:
            raise ValueError(f"open_set.score {kind!r} is not one of {', '.join(SCORES)}")
        thr = d.get("threshold")
        s = cls(kind, float("inf") if thr is None else float(thr), cell_rejection=float(d.get("cell_rejection", 0.0)),
                fitted=dict(d.get("fitted") or {}))
        if thr is not None and not np.isfinite(s.threshold):
            raise ValueError("open_set.threshold is not a finite number")
        if kind == "centroid":
            s.means = _matrix(d, "means", num_classes, embedding_dim, "open_set")
        if kind in ("mahalanobis", "mahalanobis+image"):
            s.embedding = TiedGaussian.from_dict(d.get("embedding") or {}, embedding_dim, num_classes, "open_set.embedding")
        if kind in ("image", "mahalanobis+image"):
            img = d.get("image") or {}
            if list(img.get("features") or []) != list(FEATURES):
                raise ValueError(f"open_set.image.features {img.get('features')} are not this release's "
                                 f"({', '.join(FEATURES)})")
            s.image = TiedGaussian.from_dict(img, len(FEATURES), num_classes, "open_set.image")
            if img.get("size") is not None:
                s.image_size = int(img["size"])
                if not 8 <= s.image_size <= 4096:
                    raise ValueError(f"open_set.image.size {s.image_size} is not a crop size in pixels")
        if kind == "mahalanobis+image":
            s.scales = {k: float(v) for k, v in (d.get("scales") or {}).items()}
            if set(s.scales) != set(PARTS) or not all(v > 0 and np.isfinite(v) for v in s.scales.values()):
                raise ValueError("open_set.scales must give a positive number for embedding and image")
        return s


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None  # JSON has no infinity


def _rounded(a: np.ndarray) -> list:
    """float32 precision for the card, written in at most 9 significant digits (enough to give the float32 back)."""
    a32 = np.asarray(a, np.float32)
    return np.array([float(f"{v:.9g}") for v in a32.ravel().tolist()]).reshape(a32.shape).tolist()


def _matrix(d: dict[str, Any], key: str, rows: int | None, cols: int, where: str) -> np.ndarray:
    m = np.asarray(d.get(key), np.float64)
    if m.ndim != 2 or m.shape[1] != cols or (rows is not None and m.shape[0] != rows) or not np.isfinite(m).all():
        raise ValueError(f"{where}.{key} must be a finite {rows or 'r'} x {cols} matrix, got shape {m.shape}")
    return m


def fit_open_set(score: str, train_logits: np.ndarray, train_emb: np.ndarray, train_labels: np.ndarray,
                 val_logits: np.ndarray, val_emb: np.ndarray, num_classes: int, *,
                 train_image: np.ndarray | None = None, val_image: np.ndarray | None = None,
                 cell_rejection: float = DEFAULT_CELL_REJECTION, rank: int = DEFAULT_RANK) -> OpenSetScore:
    """Fit ``score``'s parameters on training outputs and its threshold on held-out (validation) cells.

    ``*_image`` are the crops' :func:`~edge_app.crop_features.crop_features` (needed by the
    ``image`` kinds). The threshold is the ``1 - cell_rejection`` quantile of the validation
    cells' scores; for ``mahalanobis+image`` each part is first divided by its own such quantile.
    """
    if score not in SCORES:
        raise ValueError(f"open-set score {score!r} is not one of {', '.join(SCORES)}")
    if not 0.0 <= cell_rejection < 1.0:
        raise ValueError(f"cell_rejection must be in [0, 1), got {cell_rejection}")
    labels = np.asarray(train_labels)
    s = OpenSetScore(score, cell_rejection=cell_rejection,
                     fitted={"train_images": int(len(labels)), "threshold_images": int(len(val_logits))})
    if score == "centroid":
        s.means = class_centroids(train_emb, labels, num_classes)
        if np.isnan(s.means).any():
            raise ValueError("every class needs training images to fit the open-set score")
    if score in ("mahalanobis", "mahalanobis+image"):
        s.embedding = TiedGaussian.fit(train_emb, labels, num_classes, rank)
        s.fitted["rank"] = len(s.embedding.components)
    if score in ("image", "mahalanobis+image"):
        if train_image is None or val_image is None:
            raise ValueError(f"the {score} score needs the crops' image features (edge_app.crop_features)")
        s.image = TiedGaussian.fit(train_image, labels, num_classes, len(FEATURES) - 1)
    q = 1.0 - cell_rejection if cell_rejection > 0 else 1.0
    if score == "mahalanobis+image":
        parts = s.parts(val_logits, val_emb, val_image)
        s.scales = {k: max(float(np.quantile(v, q)), 1e-12) for k, v in parts.items()}
    scores = s(val_logits, val_emb, val_image)
    s.threshold = float(np.quantile(scores[np.isfinite(scores)], q))
    return s
