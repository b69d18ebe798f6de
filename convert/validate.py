"""Validation of every artifact against PyTorch, its own open-set score and temperature, and the accuracy gate.

Each artifact is scored on the same validation crops: accuracy, macro-F1, the abnormal
group's sensitivity / specificity and per-class recall / precision (scikit-learn, through
:func:`train.metrics.classification_metrics`), top-1 agreement with PyTorch, largest logit
error. Each artifact also gets its *own* rejection and calibration, fitted on its own
outputs (an int8 model's embedding and logits are not the float ones, so the device must
use the parameters of the file it runs):

* the open-set score (:func:`edge_app.rejection.fit_open_set`): parameters from the
  training crops, threshold = the validation cells' ``1 - cell_rejection`` quantile;
* the temperature (:func:`fit_temperature`) that minimises the validation NLL, with the
  ECE and the reliability bins before and after (:mod:`edge_app.confidence`).

Both are then checked: the device's own code (the card's round trip) must reproduce the
validation rejection and confidences, or conversion stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoedge.convert.errors import StageError
from cytoedge.edge_app import confidence
from cytoedge.edge_app.rejection import DEFAULT_CELL_REJECTION, DEFAULT_RANK, DEFAULT_SCORE, OpenSetScore, fit_open_set

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass
class FitSettings:
    """How each artifact's open-set score is fitted (edge-convert's --open-set-score / --cell-rejection)."""

    score: str = DEFAULT_SCORE
    cell_rejection: float = DEFAULT_CELL_REJECTION  # share of validation cells the threshold rejects
    rank: int = DEFAULT_RANK
    image_size: int | None = None  # the image statistics were taken on a copy this wide (edge_app.crop_features)


@dataclass
class ArtifactScore:
    format: str
    metrics: dict[str, Any]  # accuracy, macro_f1, abnormal, per_class, agreement, max_logit_error, unknown_rate, ...
    open_set: OpenSetScore
    calibration: dict[str, Any]  # temperature, ece_before/after, nll_before/after, reliability bins
    logits: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    status: str = "ok"
    status_reason: str = ""

    @property
    def threshold(self) -> float:
        return self.open_set.threshold


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the mean NLL of ``labels`` (scipy's bounded scalar search on log T)."""
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(TEMPERATURE_RANGE)
    res = minimize_scalar(lambda lt: confidence.nll(logits, labels, float(np.exp(lt))), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibrate(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Temperature scaling on held-out logits, with what it changed (ECE, NLL, reliability bins)."""
    t = fit_temperature(logits, labels)
    before, after = confidence.softmax(logits), confidence.softmax(logits, t)
    return {"temperature": round(t, 6), "method": "temperature scaling (minimum NLL)", "n": int(len(labels)),
            "bins": confidence.DEFAULT_BINS,
            "ece_before": confidence.expected_calibration_error(before, labels),
            "ece_after": confidence.expected_calibration_error(after, labels),
            "nll_before": confidence.nll(logits, labels), "nll_after": confidence.nll(logits, labels, t),
            "reliability_before": confidence.reliability(before, labels),
            "reliability_after": confidence.reliability(after, labels)}


def check_round_trip(fmt: str, open_set: OpenSetScore, logits: np.ndarray, emb: np.ndarray, image: np.ndarray | None,
                     unknown: np.ndarray, num_classes: int) -> None:
    """The parameters as the card stores them (float32, JSON) must give the device the same verdicts."""
    again = OpenSetScore.from_dict(open_set.to_dict(), emb.shape[1], num_classes)
    differ = int((again.unknown(logits, emb, image) != unknown).sum())
    if differ > max(1, len(unknown) // 100):
        raise StageError("validate", f"{fmt}: the open-set score as the card stores it changes {differ} of "
                         f"{len(unknown)} validation verdicts (rounding); report this with the bundle")


def score(fmt: str, runner: Runner, val_crops: np.ndarray, val_labels: np.ndarray, fit_crops: np.ndarray,
          fit_labels: np.ndarray, num_classes: int, fit: FitSettings, reference: np.ndarray | None,
          class_names: list[str] | None = None, groups: dict[str, str] | None = None,
          image: tuple[np.ndarray, np.ndarray] | None = None,
          non_cells: tuple[np.ndarray, np.ndarray | None] | None = None, view: str = "dataset") -> ArtifactScore:
    """Run ``runner`` on the validation and fitting crops; ``reference`` is PyTorch's validation logits.

    ``image``: the (validation, fitting) crops' :func:`edge_app.crop_features.crop_features`, for
    the open-set kinds that use them (the same for every artifact: they describe the pictures).
    ``non_cells``: crops the finder cut from the validation frames that match no outline (and their
    features): the share the score rejects is recorded. The per-class error rates
    (:func:`error_rates`, what the slide estimate corrects for) are counted on the kept validation crops.
    """
    from sklearn.metrics import f1_score

    from cytoedge.train.metrics import classification_metrics

    names = class_names or [str(k) for k in range(num_classes)]
    logits, emb = runner(val_crops)
    fit_logits, fit_emb = runner(fit_crops)
    if not (np.isfinite(logits).all() and np.isfinite(emb).all()):
        raise StageError("validate", f"{fmt} gives non-finite outputs on the validation images")
    try:
        val_image, fit_image = image if image is not None else (None, None)
        open_set = fit_open_set(fit.score, fit_logits, fit_emb, fit_labels, logits, emb, num_classes,
                                train_image=fit_image, val_image=val_image, cell_rejection=fit.cell_rejection,
                                rank=fit.rank)
    except ValueError as exc:
        raise StageError("validate", f"{fmt}: cannot fit the open-set score ({exc})") from None
    open_set.image_size = fit.image_size if open_set.needs_image else None
    unknown = open_set.unknown(logits, emb, val_image)
    check_round_trip(fmt, open_set, logits, emb, val_image, unknown, num_classes)
    calibration = calibrate(logits, val_labels)
    pred = logits.argmax(1)
    ref = logits if reference is None else reference
    clinical = classification_metrics(val_labels, pred, names, groups)
    metrics = {
        "n": int(len(val_labels)),
        "accuracy": float((pred == val_labels).mean()),
        "macro_f1": float(f1_score(val_labels, pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
        "abnormal": clinical["abnormal"],
        "per_class": {c: {"recall": v["recall"], "precision": v["precision"], "support": v["support"]}
                      for c, v in clinical["per_class"].items()},
        "agreement": float((pred == ref.argmax(1)).mean()),
        "max_logit_error": float(np.abs(logits - ref).max()),
        "unknown_rate": float(unknown.mean()),
        "open_set_score": open_set.score,
        "threshold": float(open_set.threshold),
        "temperature": calibration["temperature"],
        "ece_before": calibration["ece_before"],
        "ece_after": calibration["ece_after"],
        "error_rates": error_rates(val_labels, pred, unknown, names, view),
    }
    if non_cells is not None:
        nc_logits, nc_emb = runner(non_cells[0])
        nc_unknown = open_set.unknown(nc_logits, nc_emb, non_cells[1])
        metrics["non_cells"] = {"n": int(len(nc_unknown)), "rejected": float(nc_unknown.mean()),
                                "kept_as": np.bincount(nc_logits.argmax(1)[~nc_unknown], minlength=num_classes).tolist()}
    return ArtifactScore(fmt, metrics, open_set, calibration, logits)


def error_rates(labels: np.ndarray, pred: np.ndarray, unknown: np.ndarray, class_names: list[str],
                view: str) -> dict[str, Any]:
    """The confusion counts (true class x predicted class) of the validation crops the device keeps, and the
    ones it flags unknown per true class: what ``edge_app.estimate`` inverts for the slide's abnormal fraction.

    >>> r = error_rates(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([False, False, False, True]), ["a", "b"], "finder")
    >>> r["counts"], r["unknown"]
    ([[1, 1], [0, 1]], [0, 1])
    """
    k = len(class_names)
    labels, pred, keep = np.asarray(labels), np.asarray(pred), ~np.asarray(unknown, bool)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (labels[keep], pred[keep]), 1)
    return {"on": f"{view} crops of the validation split (rows: true class, columns: predicted; kept crops only)",
            "classes": list(class_names), "counts": counts.tolist(),
            "unknown": np.bincount(labels[~keep], minlength=k).tolist()}


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


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


COLUMNS = ("artifact", "accuracy", "macro-F1", "abn sens", "abn spec", "agree", "max logit err", "T",
           "ECE before>after", "threshold", "unknown", "status")


def table_rows(scores: dict[str, ArtifactScore]) -> list[list[str]]:
    rows = []
    for fmt, s in scores.items():
        m, ab = s.metrics, s.metrics["abnormal"]
        rows.append([fmt, f"{m['accuracy']:.2%}", f"{m['macro_f1']:.4f}", _pct(ab["sensitivity"]),
                     _pct(ab["specificity"]), f"{m['agreement']:.2%}", f"{m['max_logit_error']:.3g}",
                     f"{m['temperature']:.3f}", f"{m['ece_before']:.3f} > {m['ece_after']:.3f}",
                     f"{s.threshold:.3f}", f"{m['unknown_rate']:.1%}", s.status])
    return rows


def per_class_rows(scores: dict[str, ArtifactScore]) -> tuple[list[str], list[list[str]]]:
    """Per class: "recall / precision" of every artifact."""
    fmts = list(scores)
    classes = list(next(iter(scores.values())).metrics["per_class"]) if scores else []
    head = ["class (recall / precision)", *fmts]
    rows = [[c, *(f"{scores[f].metrics['per_class'][c]['recall']:.2f} / {scores[f].metrics['per_class'][c]['precision']:.2f}"
                  for f in fmts)] for c in classes]
    return head, rows


def _aligned(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(head), line(["-" * w for w in widths]), *map(line, rows)]


def reliability_lines(s: ArtifactScore) -> list[str]:
    """The reliability diagram as text: per confidence bin, accuracy before -> after calibration."""
    before, after = s.calibration["reliability_before"], s.calibration["reliability_after"]
    cells = []
    for b, a in zip(before, after):
        fmt = lambda r: "-" if not r["n"] else f"{r['accuracy']:.2f}({r['n']})"  # noqa: E731
        if b["n"] or a["n"]:
            cells.append(f"{b['lo']:.1f}-{b['hi']:.1f}: {fmt(b)} > {fmt(a)}")
    return [f"reliability of {s.format} (confidence bin: accuracy(images) before > after calibration):",
            "  " + " | ".join(cells)]


def format_table(scores: dict[str, ArtifactScore], reliability_of: str | None = None) -> str:
    """The validation tables as aligned text (what ``edge-convert`` prints)."""
    lines = _aligned(list(COLUMNS), table_rows(scores))
    if scores:
        lines += ["", *_aligned(*per_class_rows(scores))]
        s = scores.get(reliability_of or "") or list(scores.values())[-1]
        lines += ["", *reliability_lines(s)]
    return "\n".join(lines)
