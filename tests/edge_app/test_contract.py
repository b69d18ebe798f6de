"""The shared contract: model card schema and integrity, preprocessing, quantisation, rejection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cytoedge.edge_app.card import (SCHEMA_VERSION, ArtifactEntry, ModelCard, TensorSpec, describe_artifact, load_card,
                           write_card)
from cytoedge.edge_app.errors import ArtifactIntegrityError, CytoEdgeError, ModelCardError
from cytoedge.edge_app.formats import parse_formats
from cytoedge.edge_app.preprocess import (PreprocessSpec, Quantization, as_bgr_uint8, dequantize, preprocess, quantize)
from cytoedge.edge_app.rejection import OpenSetScore, centroid_distances, fit_rejection, nearest_centroid


def _card(tmp_path):
    art = tmp_path / "model_int8.tflite"
    art.write_bytes(b"\x00tflite-bytes")
    sha, size = describe_artifact(art)
    q = Quantization(0.0187, -14, "int8")
    entry = ArtifactEntry(
        format="tflite-int8", file=art.name, sha256=sha, size_bytes=size,
        input=TensorSpec("input", [1, 32, 32, 3], "int8", q, layout="NHWC"),
        outputs={"logits": TensorSpec("logits", [1, 5], "int8", Quantization(0.1, 3, "int8")),
                 "embedding": TensorSpec("embedding", [1, 8])},
        open_set=OpenSetScore("centroid", 2.5, means=np.zeros((5, 8))), calibration={"temperature": 1.5},
        validation={"accuracy": 0.9})
    card = ModelCard(architecture="shufflenet_v2_x1_0", class_names=["superficial_intermediate", "parabasal",
                     "metaplastic", "koilocytotic", "dyskeratotic"], preprocessing=PreprocessSpec(32, 32),
                     embedding_dim=8, artifacts={"tflite-int8": entry}, created="2026-11-25")
    write_card(card, tmp_path)
    return card


def test_card_round_trips_and_derives_clinical_groups(tmp_path):
    card = _card(tmp_path)
    back = load_card(tmp_path)
    assert back.to_dict() == card.to_dict()
    assert back.class_groups["koilocytotic"] == "abnormal" and back.class_groups["metaplastic"] == "benign"
    assert back.artifact("tflite-int8").input.quant == Quantization(0.0187, -14, "int8")
    assert back.verify_artifact("tflite-int8") == tmp_path / "model_int8.tflite"


def test_tampered_or_missing_artifact_is_refused(tmp_path):
    _card(tmp_path)
    card = load_card(tmp_path)
    (tmp_path / "model_int8.tflite").write_bytes(b"\x00tflite-bytez")
    with pytest.raises(ArtifactIntegrityError, match="does not match its model card"):
        card.verify_artifact("tflite-int8")
    (tmp_path / "model_int8.tflite").unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        card.verify_artifact("tflite-int8")
    with pytest.raises(ModelCardError, match="no tflite-fp32 artifact"):
        card.artifact("tflite-fp32")


def test_unknown_schema_and_malformed_cards_are_refused(tmp_path):
    _card(tmp_path)
    path = tmp_path / "model_card.json"
    d = json.loads(path.read_text())
    d["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(d))
    with pytest.raises(ModelCardError, match=f"schema version {SCHEMA_VERSION + 1} is not supported"):
        load_card(tmp_path)
    d["schema_version"] = SCHEMA_VERSION
    del d["class_names"]
    path.write_text(json.dumps(d))
    with pytest.raises(ModelCardError, match="malformed"):
        load_card(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ModelCardError, match="cannot be read"):
        load_card(tmp_path)
    with pytest.raises(ModelCardError, match="no model card"):
        load_card(tmp_path / "elsewhere")


def test_a_card_of_schema_1_or_without_the_new_fields_says_convert_again(tmp_path):
    _card(tmp_path)
    path = tmp_path / "model_card.json"
    good = json.loads(path.read_text())
    assert SCHEMA_VERSION == 3 and good["artifacts"]["tflite-int8"]["calibration"]["temperature"] == 1.5
    old = json.loads(json.dumps(good))
    old["schema_version"] = 1  # a card of the first release: centroids + threshold, raw softmax
    entry = old["artifacts"]["tflite-int8"]
    entry["centroids"], entry["threshold"] = entry.pop("open_set")["means"], 2.5
    del entry["calibration"]
    path.write_text(json.dumps(old))
    with pytest.raises(ModelCardError, match=r"schema version 1 is not supported \(this CytoEdge reads versions 2 and 3\): "
                                             "convert the model again"):
        load_card(tmp_path)
    for key, words in (("open_set", "no open_set"), ("calibration", "no calibration")):
        d = json.loads(json.dumps(good))
        del d["artifacts"]["tflite-int8"][key]
        path.write_text(json.dumps(d))
        with pytest.raises(ModelCardError, match=f"tflite-int8 entry has {words}.*convert the model again"):
            load_card(tmp_path)
    for key, field, value, words in (("calibration", "temperature", 0, "temperature 0"),
                                     ("open_set", "means", [[0.0] * 3], "means"), ("open_set", "score", "magic", "magic")):
        d = json.loads(json.dumps(good))
        d["artifacts"]["tflite-int8"][key][field] = value
        path.write_text(json.dumps(d))
        with pytest.raises(ModelCardError, match=words):
            load_card(tmp_path)


def test_format_names_are_exact():
    assert [f.name for f in parse_formats("tflite-int8, onnx,tflite-int8")] == ["tflite-int8", "onnx"]
    with pytest.raises(CytoEdgeError, match="unknown format 'tflite_int8'"):
        parse_formats("tflite_int8")


def test_preprocess_resizes_shorter_side_crops_centre_and_normalises():
    spec = PreprocessSpec(size=8, resize=8)
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, 8:24] = (0, 0, 255)  # red (BGR) in the centre, black at the sides
    x = preprocess(img, spec)
    assert x.shape == (8, 8, 3)
    red = (1.0 - spec.mean[0]) / spec.std[0]
    np.testing.assert_allclose(x[:, :, 0], red, rtol=1e-6)  # RGB order: red is channel 0
    np.testing.assert_allclose(x[:, :, 2], -spec.mean[2] / spec.std[2], rtol=1e-6)


@pytest.mark.parametrize("frame", [
    np.full((10, 12), 200, np.uint8),                        # grey
    np.full((10, 12, 4), 200, np.uint8),                     # BGRA
    np.full((10, 12, 3), 200 * 257, np.uint16),              # 16-bit
    np.full((10, 12, 1), 200, np.uint8),                     # single channel
    np.full((10, 12, 3), 200 / 255, np.float32),             # float in [0, 1]
])
def test_odd_frames_become_bgr_uint8(frame):
    out = as_bgr_uint8(frame)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - 200) <= 1


@pytest.mark.parametrize("bad", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8)])
def test_non_images_are_refused(bad):
    with pytest.raises(ValueError):
        as_bgr_uint8(bad)


def test_quantize_round_trip_and_saturation():
    q = Quantization(0.05, 10, "int8")
    x = np.array([-7.0, -1.0, 0.0, 0.5, 6.0], np.float32)
    qx = quantize(x, q)
    assert qx.dtype == np.int8 and qx.tolist() == [-128, -10, 10, 20, 127]
    np.testing.assert_allclose(dequantize(qx, q)[1:4], x[1:4], atol=q.scale / 2)
    assert quantize(x, Quantization()).dtype == np.float32  # float artifact: untouched


def test_rejection_flags_far_embeddings():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 0.1, (50, 4)), rng.normal(3, 0.1, (50, 4))])
    labels = np.repeat([0, 1], 50)
    cents, thr = fit_rejection(emb, labels, 2, quantile=0.99)
    np.testing.assert_allclose(cents, [[0] * 4, [3] * 4], atol=0.05)
    idx, dist = nearest_centroid(np.array([[0.02, 0, 0, 0], [3, 3, 3, 3.1], [10, -10, 0, 0]]), cents)
    assert idx[:2].tolist() == [0, 1]
    assert dist[0] < thr and dist[1] < thr and dist[2] > thr
    d_own = centroid_distances(emb, cents)[np.arange(100), labels]
    assert np.mean(d_own <= thr) >= 0.99


def test_a_schema_2_card_loads_runs_its_old_rule_and_says_so_once(tmp_path):
    """Cards written before the device view (schema 2) have no error rates: they still load, and the first
    Classifier of a process says once that the slide report falls back to the count rule."""
    from cytoedge.edge_app.card import LEGACY_NOTE, say_legacy_once

    _card(tmp_path)
    path = tmp_path / "model_card.json"
    d = json.loads(path.read_text())
    assert d["schema_version"] == SCHEMA_VERSION == 3
    d["schema_version"] = 2
    path.write_text(json.dumps(d))
    old = load_card(tmp_path)
    assert old.legacy and old.artifact("tflite-int8").error_rates is None
    said = []
    assert say_legacy_once(old, lambda *a: said.append(a)) is True
    assert say_legacy_once(load_card(tmp_path), lambda *a: said.append(a)) is False  # the same card: said once
    assert len(said) == 1 and LEGACY_NOTE in said[0]
    _card(tmp_path)  # this release's card: nothing to say
    assert not load_card(tmp_path).legacy and say_legacy_once(load_card(tmp_path / "model_card.json")) is False


def test_error_rates_are_read_from_a_schema_3_entry(tmp_path):
    card = _card(tmp_path)
    rates = {"classes": card.class_names, "counts": np.eye(5, dtype=int).tolist(), "unknown": [0] * 5}
    card.artifacts["tflite-int8"].validation["error_rates"] = rates
    write_card(card, tmp_path)
    back = load_card(tmp_path)
    assert not back.legacy and back.artifact("tflite-int8").error_rates["counts"][2][2] == 1
