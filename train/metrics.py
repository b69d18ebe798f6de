"""Classification metrics (scikit-learn), the paper's four plus F1 and per-class detail.

Specificity is not in scikit-learn; it is read off the same confusion matrix:
for class k, TN / (TN + FP) treating k one-vs-rest, then macro-averaged.

The clinical view (:func:`abnormal_figures`): the abnormal group (koilocytotic +
dyskeratotic, :mod:`edge_app.classes`) against every other class, as a screening test:
sensitivity = abnormal cells called abnormal, specificity = other cells not called
abnormal (scikit-learn's recall of each side).
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_KEYS = ("accuracy", "precision", "recall", "specificity", "f1")


def abnormal_figures(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                     groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Sensitivity and specificity of "abnormal group vs the rest" (class indices in, figures out)."""
    from sklearn.metrics import recall_score

    from cytoedge.edge_app.classes import abnormal_indices

    ab = abnormal_indices(class_names, groups)
    t, p = np.isin(y_true, ab), np.isin(y_pred, ab)
    return {"classes": [class_names[k] for k in ab], "n_abnormal": int(t.sum()), "n_other": int((~t).sum()),
            "sensitivity": float(recall_score(t, p, pos_label=True, zero_division=0)) if t.any() else None,
            "specificity": float(recall_score(t, p, pos_label=False, zero_division=0)) if (~t).any() else None}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                           groups: dict[str, str] | None = None) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    spec = np.divide(tn, tn + fp, out=np.zeros(len(labels)), where=(tn + fp) > 0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(p.mean()),
        "recall": float(r.mean()),
        "specificity": float(spec.mean()),
        "f1": float(f.mean()),
        "n": int(total),
        "per_class": {
            name: {"precision": float(p[k]), "recall": float(r[k]), "specificity": float(spec[k]),
                   "f1": float(f[k]), "support": int(support[k])}
            for k, name in enumerate(class_names)
        },
        "abnormal": abnormal_figures(y_true, y_pred, class_names, groups),
        "confusion_matrix": cm.tolist(),
    }


def same_scores_for_every_image(logits: np.ndarray, tol: float = 1e-6) -> bool:
    """True when no class score varies across the images (dead units: the model has stopped learning).

    >>> same_scores_for_every_image(np.zeros((3, 5))), same_scores_for_every_image(np.eye(3))
    (True, False)
    """
    return len(logits) > 1 and float(np.ptp(logits, axis=0).max()) <= tol


def mean_std(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and (population) standard deviation of each metric over folds."""
    out = {}
    for key in METRIC_KEYS:
        vals = np.array([m[key] for m in per_fold], dtype=float)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std())}
    return out


def abnormal_sensitivity_at_specificity(y_true: np.ndarray, probs: np.ndarray, class_names: list[str],
                                        specificity: float = 0.95) -> float:
    """Share of abnormal-group cells found when at most ``1 - specificity`` of the other cells are flagged.

    The screening view: a cell's abnormal score is the summed probability of the abnormal
    group's classes (:mod:`edge_app.classes`: koilocytotic, dyskeratotic); the threshold is the
    one on the ROC curve with the highest sensitivity whose specificity is still at least
    ``specificity``.

    >>> names = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
    >>> p = np.array([[.9, 0, 0, .1, 0], [.6, 0, 0, .4, 0], [0, 0, .3, .7, 0], [0, 0, 0, .5, .5]])
    >>> abnormal_sensitivity_at_specificity(np.array([0, 2, 3, 4]), p, names, 0.95)
    1.0
    >>> abnormal_sensitivity_at_specificity(np.array([0, 3, 2, 4]), p, names, 0.95)
    0.5
    """
    from sklearn.metrics import roc_curve

    from cytoedge.edge_app.classes import ABNORMAL, group_of

    abnormal = [k for k, c in enumerate(class_names) if group_of(c) == ABNORMAL]
    positive = np.isin(np.asarray(y_true), abnormal)
    if not abnormal or positive.all() or not positive.any():
        raise ValueError("sensitivity at a fixed specificity needs abnormal-group cells (koilocytotic, dyskeratotic) "
                         "and other cells among the validation images")
    fpr, tpr, _ = roc_curve(positive, np.asarray(probs)[:, abnormal].sum(axis=1))
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())
