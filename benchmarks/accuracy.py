"""Accuracy per format on a labelled folder: accuracy, macro-F1, agreement with the fp32 reference,
per-class recall and precision, and the abnormal group's sensitivity and specificity.

The folder is read by the training side's reader (SIPaKMeD as it unpacks, or one
sub-folder of images per class), each image goes through edge_app's one
preprocessing function, and every format of a model sees the same images in one
pass. The reference is the first fp32 format that ran, in the order torch, onnx,
tflite-fp32; agreement is the share of images where a format's top-1 class equals
the reference's.

The clinical figures (:func:`clinical`) come from the confusion matrix in numpy: a Pi
with only the edge dependencies has no scikit-learn (a test holds them equal to
``train.metrics``, which uses it). Abnormal = the classes :mod:`edge_app.classes` puts in
the abnormal group (koilocytotic + dyskeratotic), against every other class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.card import ModelCard
from cytoedge.edge_app.errors import CytoEdgeError

REFERENCE_ORDER = ("torch", "onnx", "tflite-fp32")


@dataclass
class LabelledData:
    root: Path
    paths: list[Path]
    labels: np.ndarray  # indices into the class names given to load_labelled
    class_names: list[str]
    summary: str


def load_labelled(root: str | Path, class_names: Sequence[str], max_images: int | None = None) -> LabelledData:
    """Index a labelled folder; its classes must be among ``class_names`` (the model's)."""
    from cytoedge.train.data.sipakmed import scan_dataset  # torch-free reader, shared with edge-train

    index = scan_dataset(root)
    unknown = [c for c in index.class_names if c not in class_names]
    if unknown:
        raise CytoEdgeError(f"data folder {root} has classes the model does not know ({', '.join(unknown)}); "
                            f"the model's classes are {', '.join(class_names)}")
    samples = index.samples
    if max_images is not None and max_images < len(samples):
        picks = np.linspace(0, len(samples) - 1, max_images).round().astype(int)  # every class keeps its share
        samples = [samples[i] for i in sorted(set(picks.tolist()))]
    labels = np.array([list(class_names).index(index.class_names[s.label]) for s in samples], np.int64)
    return LabelledData(Path(root), [s.path for s in samples], labels, list(class_names), index.summary())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in either array (scikit-learn's convention).

    >>> round(macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 4)
    0.7333
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def clinical(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
             groups: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Per-class recall / precision and the abnormal group's sensitivity / specificity (None where undefined).

    >>> r = clinical(np.array([0, 0, 3, 4, 3]), np.array([0, 3, 3, 4, 1]), ["a", "b", "c", "koilocytotic", "dyskeratotic"])
    >>> r["abnormal"]["sensitivity"], r["abnormal"]["specificity"], r["per_class"]["a"]
    (0.6666666666666666, 0.5, {'recall': 0.5, 'precision': 1.0, 'support': 2})
    """
    from cytoedge.edge_app.classes import abnormal_indices

    k = len(class_names)
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp, rows, cols = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    ab = abnormal_indices(list(class_names), dict(groups) if groups else None)
    t, p = np.isin(y_true, ab), np.isin(y_pred, ab)
    return {
        "per_class": {c: {"recall": _ratio(tp[i], rows[i]), "precision": _ratio(tp[i], cols[i]), "support": int(rows[i])}
                      for i, c in enumerate(class_names)},
        "abnormal": {"classes": [class_names[i] for i in ab], "n_abnormal": int(t.sum()), "n_other": int((~t).sum()),
                     "sensitivity": _ratio(int((t & p).sum()), int(t.sum())),
                     "specificity": _ratio(int((~t & ~p).sum()), int((~t).sum()))},
    }


def score(y_true: np.ndarray, y_pred: np.ndarray, ref_pred: np.ndarray | None,
          class_names: Sequence[str] | None = None, groups: Mapping[str, str] | None = None) -> dict[str, Any]:
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred),
        "agreement": float(np.mean(y_pred == ref_pred)) if ref_pred is not None and len(y_true) else None,
    }
    if class_names is not None:
        out.update(clinical(y_true, y_pred, class_names, groups))
    return out


def evaluate(card: ModelCard, formats: Sequence[str], data: LabelledData, *,
             threads: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """``{format: {"status", "reason", n, accuracy, macro_f1, agreement, reference}}`` for one model.

    ``threads`` gives each format's thread count (the run uses the fastest one measured).

    A format that cannot be loaded or fails on an image is recorded as failed; the
    others go on.
    """
    from cytoedge.benchmarks.runtimes import input_normalized, load_runner
    from cytoedge.edge_app.preprocess import preprocess
    from cytoedge.edge_app.sources import read_image

    results: dict[str, dict[str, Any]] = {}
    runners: dict[str, Any] = {}
    for fmt in formats:
        try:
            runners[fmt] = load_runner(card, fmt, threads=threads[fmt], batch=1, verify=False)
        except Exception as exc:  # noqa: BLE001 - recorded per format, the rest still run
            results[fmt] = {"status": "failed", "reason": _reason(exc)}
    preds: dict[str, list[int]] = {fmt: [] for fmt in runners}
    for path in data.paths:
        image, why = read_image(path)
        if image is None:
            raise CytoEdgeError(f"cannot read {path} ({why}): remove it from the data folder")
        inputs = {norm: preprocess(image, card.preprocessing, normalize=norm)[None] for norm in (True, False)}
        for fmt in list(runners):
            try:
                logits, _ = runners[fmt].run(inputs[input_normalized(card.artifact(fmt))])
            except Exception as exc:  # noqa: BLE001
                results[fmt] = {"status": "failed", "reason": f"on {path.name}: {_reason(exc)}"}
                del runners[fmt], preds[fmt]
                continue
            preds[fmt].append(int(np.argmax(logits[0])))
    for runner in runners.values():
        runner.close()
    reference = next((f for f in REFERENCE_ORDER if f in preds), None)
    ref_pred = np.array(preds[reference]) if reference else None
    for fmt, p in preds.items():
        results[fmt] = {"status": "ok", "reason": "", "reference": reference, "threads": threads[fmt],
                        **score(data.labels, np.array(p, np.int64), ref_pred, card.class_names, card.class_groups)}
    return {fmt: results[fmt] for fmt in formats if fmt in results}


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return first if isinstance(exc, CytoEdgeError) else f"{type(exc).__name__}: {first}"
