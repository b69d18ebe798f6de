"""Accuracy figures: macro-F1 as scikit-learn computes it, agreement, and the labelled-folder checks."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.benchmarks.accuracy import clinical, load_labelled, macro_f1, score
from cytoedge.edge_app.classes import SIPAKMED_CLASSES
from cytoedge.edge_app.errors import CytoEdgeError


def test_macro_f1_equals_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.integers(0, 5, 60)
        p = np.where(rng.random(60) < 0.6, y, rng.integers(0, 5, 60))
        assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))


def test_score_reports_accuracy_and_agreement_with_the_reference():
    y = np.array([0, 1, 2, 3])
    got = score(y, np.array([0, 1, 2, 0]), ref_pred=np.array([0, 1, 0, 0]))
    assert got == {"n": 4, "accuracy": 0.75, "macro_f1": pytest.approx(macro_f1(y, np.array([0, 1, 2, 0]))),
                   "agreement": 0.75}
    assert score(y, y, None)["agreement"] is None


def test_clinical_figures_equal_scikit_learn_and_train_metrics():
    """The numpy figures bench-device reports on a Pi equal the scikit-learn ones edge-train and edge-convert report."""
    from sklearn.metrics import precision_score, recall_score

    from cytoedge.train.metrics import classification_metrics

    names = list(SIPAKMED_CLASSES)
    rng = np.random.default_rng(2)
    for _ in range(20):
        y = rng.integers(0, 5, 80)
        p = np.where(rng.random(80) < 0.6, y, rng.integers(0, 5, 80))
        got, ref = clinical(y, p, names), classification_metrics(y, p, names)
        ab_t, ab_p = np.isin(y, [3, 4]), np.isin(p, [3, 4])  # koilocytotic + dyskeratotic
        assert got["abnormal"]["sensitivity"] == pytest.approx(recall_score(ab_t, ab_p))
        assert got["abnormal"]["specificity"] == pytest.approx(recall_score(~ab_t, ~ab_p))
        assert ref["abnormal"]["sensitivity"] == pytest.approx(got["abnormal"]["sensitivity"])
        assert ref["abnormal"]["specificity"] == pytest.approx(got["abnormal"]["specificity"])
        assert ref["abnormal"]["classes"] == got["abnormal"]["classes"] == ["koilocytotic", "dyskeratotic"]
        rec = recall_score(y, p, labels=range(5), average=None, zero_division=0)
        prec = precision_score(y, p, labels=range(5), average=None, zero_division=0)
        for k, c in enumerate(names):
            assert got["per_class"][c]["recall"] == pytest.approx(rec[k])
            assert got["per_class"][c]["precision"] == pytest.approx(prec[k]) or got["per_class"][c]["precision"] is None
            assert ref["per_class"][c]["recall"] == pytest.approx(rec[k])
    none_abnormal = clinical(np.array([0, 1]), np.array([0, 3]), names)["abnormal"]
    assert none_abnormal["sensitivity"] is None and none_abnormal["specificity"] == 0.5


def test_labelled_folder_maps_to_the_model_classes_and_caps_evenly(synth_tree):
    data = load_labelled(synth_tree, SIPAKMED_CLASSES, max_images=25)
    assert len(data.paths) == 25 and set(data.labels.tolist()) == set(range(5))  # every class kept
    reordered = list(reversed(SIPAKMED_CLASSES))
    again = load_labelled(synth_tree, reordered, max_images=25)
    assert [reordered[i] for i in again.labels] == [SIPAKMED_CLASSES[i] for i in data.labels]


def test_a_class_the_model_does_not_know_and_an_empty_folder_are_errors(synth_tree, tmp_path):
    with pytest.raises(CytoEdgeError, match="classes the model does not know"):
        load_labelled(synth_tree, ["parabasal", "metaplastic"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CytoEdgeError, match="no class folders"):
        load_labelled(tmp_path / "empty", SIPAKMED_CLASSES)
