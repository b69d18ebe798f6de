"""The classifier on a real converted model in the real LiteRT interpreter."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.card import load_card
from cytoedge.edge_app.classifier import Classifier, choose_format
from cytoedge.edge_app.errors import ArtifactIntegrityError, CytoEdgeError, ModelCardError
from cytoedge.edge_app.finder import crops_of, find_cells


@pytest.fixture(scope="module")
def crops(field_frames):
    frame = cv2.imread(str(field_frames[0]))
    return crops_of(frame, find_cells(frame))


def test_int8_is_the_default_and_batches_match_single_crops(device_model, crops):
    clf = Classifier(device_model, threads=1)
    assert clf.format == "tflite-int8" and clf.loaded.runtime == "litert" and clf.max_batch > 1
    assert len(crops) > 3
    batched = clf.classify(crops)
    assert clf.invocations == math.ceil(len(crops) / clf.max_batch)
    single = [clf.classify([c])[0] for c in crops]
    assert [p.class_index for p in batched] == [p.class_index for p in single]
    assert np.allclose([p.confidence for p in batched], [p.confidence for p in single], atol=0.02)
    for p in batched:
        assert 0.0 < p.confidence <= 1.0 and np.isfinite(p.score) and p.score >= 0
        assert p.class_name in clf.class_names
        assert (p.group == "unknown") == p.unknown


def test_fp32_and_int8_mostly_agree(device_model, crops):
    int8 = Classifier(device_model, "tflite-int8").raw_outputs(crops)[0]
    fp32 = Classifier(device_model, "tflite-fp32").raw_outputs(crops)[0]
    assert int8.shape == fp32.shape == (len(crops), 5)
    assert np.abs(int8 - fp32).max() < 0.5 * np.abs(fp32).max() + 0.05  # the same model, quantised


def test_confidence_is_calibrated_and_the_score_is_the_cards(device_model, crops):
    from cytoedge.edge_app.confidence import softmax

    clf = Classifier(device_model)
    entry = load_card(device_model).artifact("tflite-int8")
    assert clf.temperature == entry.calibration["temperature"] != 1.0
    logits, emb = clf.raw_outputs(crops)
    preds = clf.classify(crops)
    np.testing.assert_allclose([p.confidence for p in preds], softmax(logits, clf.temperature).max(1), rtol=1e-6)
    assert not np.allclose([p.confidence for p in preds], softmax(logits).max(1))  # not the raw softmax
    from cytoedge.edge_app.crop_features import crop_features

    scores = entry.open_set(logits, emb, crop_features(clf.pixels(crops), entry.open_set.image_size))  # card 3: 64 px
    np.testing.assert_allclose([p.score for p in preds], scores, rtol=1e-6)
    assert [p.unknown for p in preds] == (scores > entry.open_set.threshold).tolist()


def test_min_confidence_and_open_set_threshold_flag_unknown(model_copy, crops):
    everything_low = Classifier(model_copy, min_confidence=1.0).classify(crops)
    assert all(p.unknown and "low confidence" in p.reason and p.group == "unknown" for p in everything_low)
    card_file = model_copy / "model_card.json"
    card = json.loads(card_file.read_text())
    card["artifacts"]["tflite-int8"]["open_set"]["threshold"] = 0.0  # the card is read, not hashed: the rule is the card's
    card_file.write_text(json.dumps(card))
    far = Classifier(model_copy).classify(crops)
    assert all(p.unknown and p.reason == "not like any known class" for p in far)  # min_confidence 0: never low
    with pytest.raises(CytoEdgeError, match="between 0 and 1"):
        Classifier(model_copy, min_confidence=1.5)


def test_tampered_artifact_is_refused(model_copy):
    path = model_copy / "model_int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="does not match its model card"):
        Classifier(model_copy)
    assert Classifier(model_copy, "tflite-fp32").format == "tflite-fp32"  # the other artifact is intact


def test_card_problems_are_refused(model_copy):
    card_file = model_copy / "model_card.json"
    card = json.loads(card_file.read_text())
    with pytest.raises(CytoEdgeError, match="does not run on the device"):
        Classifier(model_copy, "onnx")
    card["artifacts"]["tflite-int8"]["status"] = "rejected"
    card["artifacts"]["tflite-int8"]["status_reason"] = "int8 accuracy 50% vs 90%"
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="rejected by edge-convert.*--allow-rejected"):
        Classifier(model_copy, "tflite-int8")
    assert choose_format(load_card(model_copy)) == "tflite-fp32"  # the default skips a rejected artifact
    assert Classifier(model_copy, "tflite-int8", allow_rejected=True).format == "tflite-int8"
    card["artifacts"]["tflite-fp32"]["input"]["shape"] = [-1, 32, 32, 3]
    card["preprocessing"]["size"] = card["preprocessing"]["resize"] = 32
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="does not match its model card: input shape"):
        Classifier(model_copy, "tflite-fp32")
    card["schema_version"] = 99
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="schema version 99"):
        Classifier(model_copy)


def test_no_crops_no_invocation(device_model):
    clf = Classifier(device_model)
    assert clf.classify([]) == [] and clf.invocations == 0
