"""Validation of every artifact against PyTorch, the per-artifact rejection threshold, and the accuracy gate.

Each artifact is scored on the same validation crops (accuracy, macro-F1, top-1
agreement with PyTorch, largest logit error) and gets its *own* centroids and
threshold, fitted (:func:`edge_app.rejection.fit_rejection`) on the training crops'
embeddings as that artifact computes them: an int8 model's embedding space is not
the float one, so the device must use the centroids of the file it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_app.rejection import fit_rejection, nearest_centroid

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class ArtifactScore:
    format: str
    metrics: dict[str, Any]  # accuracy, macro_f1, agreement, max_logit_error, unknown_rate, n, threshold
    centroids: np.ndarray
    threshold: float
    logits: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    status: str = "ok"
    status_reason: str = ""


def score(fmt: str, runner: Runner, val_crops: np.ndarray, val_labels: np.ndarray, fit_crops: np.ndarray,
          fit_labels: np.ndarray, num_classes: int, quantile: float, reference: np.ndarray | None) -> ArtifactScore:
    """Run ``runner`` on the validation and fitting crops; ``reference`` is PyTorch's validation logits."""
    from sklearn.metrics import f1_score

    logits, emb = runner(val_crops)
    _, fit_emb = runner(fit_crops)
    cents, thr = fit_rejection(fit_emb, fit_labels, num_classes, quantile)
    pred = logits.argmax(1)
    _, dist = nearest_centroid(emb, cents)
    ref = logits if reference is None else reference
    metrics = {
        "n": int(len(val_labels)),
        "accuracy": float((pred == val_labels).mean()),
        "macro_f1": float(f1_score(val_labels, pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
        "agreement": float((pred == ref.argmax(1)).mean()),
        "max_logit_error": float(np.abs(logits - ref).max()),
        "unknown_rate": float((dist > thr).mean()),
        "threshold": float(thr),
    }
    return ArtifactScore(fmt, metrics, cents, float(thr), logits)


def apply_gate(scores: dict[str, ArtifactScore], max_drop: float, reference: str = "torch") -> list[str]:
    """Mark every artifact more than ``max_drop`` accuracy points below ``reference`` as rejected; their reasons."""
    base = scores[reference].metrics["accuracy"]
    reasons = []
    for fmt, s in scores.items():
        if fmt == reference:
            continue
        drop = 100.0 * (base - s.metrics["accuracy"])
        s.metrics["accuracy_drop_points"] = round(drop, 4)
        if drop > max_drop:
            s.status = "rejected"
            s.status_reason = (f"accuracy {100 * s.metrics['accuracy']:.2f}% is {drop:.2f} points below PyTorch's "
                               f"{100 * base:.2f}% (allowed: --max-drop {max_drop:g})")
            reasons.append(f"{fmt}: {s.status_reason}")
    return reasons


COLUMNS = (("artifact", "{}"), ("accuracy", "{:.2%}"), ("macro-F1", "{:.4f}"), ("agree", "{:.2%}"),
           ("max logit err", "{:.3g}"), ("threshold", "{:.3f}"), ("unknown", "{:.1%}"), ("status", "{}"))


def table_rows(scores: dict[str, ArtifactScore]) -> list[list[str]]:
    rows = []
    for fmt, s in scores.items():
        m = s.metrics
        vals = (fmt, m["accuracy"], m["macro_f1"], m["agreement"], m["max_logit_error"], s.threshold,
                m["unknown_rate"], s.status)
        rows.append([f.format(v) for (_, f), v in zip(COLUMNS, vals)])
    return rows


def format_table(scores: dict[str, ArtifactScore]) -> str:
    """The validation table as aligned text (what ``edge-convert`` prints)."""
    head = [c for c, _ in COLUMNS]
    rows = table_rows(scores)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])
