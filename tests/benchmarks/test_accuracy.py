"""Accuracy figures: macro-F1 as scikit-learn computes it, agreement, and the labelled-folder checks."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy import load_labelled, macro_f1, score
from edge_app.classes import SIPAKMED_CLASSES
from edge_app.errors import CytoEdgeError


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
