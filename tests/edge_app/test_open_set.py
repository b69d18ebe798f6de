"""The open-set scores (edge_app.rejection) and calibrated confidence (edge_app.confidence), numpy only."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.edge_app import confidence
from cytoedge.edge_app.crop_features import FEATURES
from cytoedge.edge_app.rejection import SCORES, OpenSetScore, TiedGaussian, fit_open_set


def _two_classes(rng: np.random.Generator, n: int, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Two classes sharing one covariance: wide along the first axes, very tight along the last ones."""
    scale = np.r_[np.full(d // 2, 1.0), np.full(d - d // 2, 0.02)]
    labels = np.repeat([0, 1], n)
    means = np.zeros((2, d))
    means[1, 0] = 6.0
    return means[labels] + rng.standard_normal((2 * n, d)) * scale, labels


def _logits(emb: np.ndarray) -> np.ndarray:
    return np.stack([-emb[:, 0], emb[:, 0] - 6.0], axis=1)


def test_mahalanobis_equals_the_ppca_covariance_computed_densely():
    rng = np.random.default_rng(0)
    emb, labels = _two_classes(rng, 200)
    s = fit_open_set("mahalanobis", _logits(emb), emb, labels, _logits(emb), emb, 2, rank=4)
    g = s.embedding
    cov = g.components.T @ np.diag(g.variances) @ g.components
    cov += g.residual_variance * (np.eye(emb.shape[1]) - g.components.T @ g.components)
    x = rng.standard_normal((7, emb.shape[1]))
    want = np.sqrt(np.min([np.einsum("ij,ij->i", x - m, np.linalg.solve(cov, (x - m).T).T) for m in g.means], axis=0))
    np.testing.assert_allclose(s(_logits(x), x), want, rtol=1e-8)


def test_mahalanobis_sees_what_euclidean_distance_misses():
    """A point 0.5 away along a direction in which the classes barely vary is no cell of theirs."""
    rng = np.random.default_rng(1)
    emb, labels = _two_classes(rng, 300)
    val, _ = _two_classes(rng, 300)
    odd = np.zeros((1, emb.shape[1]))
    odd[0, -1] = 0.5  # tight axis
    typical = np.zeros((1, emb.shape[1]))
    typical[0, 0] = 1.5  # wide axis: a normal cell of class 0
    maha = fit_open_set("mahalanobis", _logits(emb), emb, labels, _logits(val), val, 2, rank=6)
    eucl = fit_open_set("centroid", _logits(emb), emb, labels, _logits(val), val, 2)
    assert maha.unknown(_logits(odd), odd)[0] and not maha.unknown(_logits(typical), typical)[0]
    assert not eucl.unknown(_logits(odd), odd)[0]


def _image(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Stand-in picture statistics: one Gaussian per class."""
    return labels[:, None] * 0.5 + rng.standard_normal((len(labels), len(FEATURES)))


@pytest.mark.parametrize("score", SCORES)
def test_threshold_rejects_the_asked_share_of_validation_cells_and_survives_the_card(score):
    rng = np.random.default_rng(2)
    emb, labels = _two_classes(rng, 200)
    val, val_labels = _two_classes(rng, 500)
    img, val_img = _image(rng, labels), _image(rng, val_labels)
    s = fit_open_set(score, _logits(emb), emb, labels, _logits(val), val, 2, train_image=img, val_image=val_img,
                     cell_rejection=0.05, rank=3)
    assert np.isfinite(s.threshold) and s.needs_image == ("image" in score)
    assert s.unknown(_logits(val), val, val_img).mean() == pytest.approx(0.05, abs=0.005)
    back = OpenSetScore.from_dict(s.to_dict(), emb.shape[1], 2)
    assert back.score == score and back.threshold == pytest.approx(s.threshold)
    np.testing.assert_allclose(back(_logits(val), val, val_img), s(_logits(val), val, val_img), rtol=1e-4, atol=1e-5)


def test_the_combined_score_rejects_what_either_part_rejects():
    rng = np.random.default_rng(4)
    emb, labels = _two_classes(rng, 300)
    val, val_labels = _two_classes(rng, 300)
    img, val_img = _image(rng, labels), _image(rng, val_labels)
    s = fit_open_set("mahalanobis+image", _logits(emb), emb, labels, _logits(val), val, 2, train_image=img,
                     val_image=val_img, rank=6)
    cell, cell_img = val[:1], val_img[:1] * 0.0  # an ordinary embedding and picture
    odd_emb = cell.copy()
    odd_emb[0, -1] += 0.5  # off the classes' tight axis
    odd_img = cell_img + 8.0  # a picture unlike any cell's
    assert not s.unknown(_logits(cell), cell, cell_img)[0]
    assert s.unknown(_logits(odd_emb), odd_emb, cell_img)[0] and s.unknown(_logits(cell), cell, odd_img)[0]
    assert set(s.scales) == {"embedding", "image"}
    with pytest.raises(ValueError, match="image features"):
        s(_logits(cell), cell)


def test_logit_scores_rank_flat_predictions_above_confident_ones():
    confident, flat = np.array([[8.0, 0.0, 0.0]]), np.array([[0.1, 0.0, 0.05]])
    emb = np.zeros((1, 2))
    for score in ("energy", "max_logit", "msp"):
        s = OpenSetScore(score)
        assert s(flat, emb)[0] > s(confident, emb)[0], score


def test_bad_card_entries_are_value_errors():
    s = OpenSetScore("mahalanobis", 3.0, embedding=TiedGaussian(np.zeros((2, 4)), np.eye(4)[:2], np.ones(2), 1.0))
    good = s.to_dict()
    assert OpenSetScore.from_dict(good, 4, 2).threshold == 3.0
    with pytest.raises(ValueError):
        OpenSetScore.from_dict({**good, "score": "nearest"}, 4, 2)
    for key, value in (("variances", [1.0]), ("variances", [1.0, -1.0]), ("components", [[0.0, 1.0]]),
                       ("means", [[0.0] * 4]), ("residual_variance", 0.0)):
        with pytest.raises(ValueError):
            OpenSetScore.from_dict({**good, "embedding": {**good["embedding"], key: value}}, 4, 2)
    with pytest.raises(ValueError, match="features"):  # image statistics of another release
        OpenSetScore.from_dict({**good, "score": "image", "image": {**good["embedding"], "features": ["x"]}}, 4, 2)


def test_fitting_needs_every_class_and_a_valid_share():
    emb, labels = np.zeros((4, 3)), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="every class"):
        fit_open_set("centroid", np.zeros((4, 3)), emb, labels, np.zeros((2, 3)), emb[:2], 3)
    with pytest.raises(ValueError, match="image features"):
        fit_open_set("image", np.zeros((4, 2)), emb, labels, np.zeros((2, 2)), emb[:2], 2)
    with pytest.raises(ValueError, match="cell_rejection"):
        fit_open_set("energy", np.zeros((4, 2)), emb, labels, np.zeros((2, 2)), emb[:2], 2, cell_rejection=1.0)


def test_temperature_softmax_and_ece_against_a_brute_force():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (400, 5))
    labels = rng.integers(0, 5, 400)
    p1, p2 = confidence.softmax(logits), confidence.softmax(logits, 2.5)
    np.testing.assert_allclose(p1.sum(1), 1.0)
    assert (p1.argmax(1) == p2.argmax(1)).all() and (p2.max(1) < p1.max(1)).all()  # T > 1 softens, same class
    conf, hit = p1.max(1), p1.argmax(1) == labels
    want = 0.0
    for lo in np.arange(10) / 10:
        sel = (conf >= lo) & ((conf < lo + 0.1) if lo < 0.9 else (conf <= 1.0))
        if sel.any():
            want += sel.mean() * abs(hit[sel].mean() - conf[sel].mean())
    assert confidence.expected_calibration_error(p1, labels) == pytest.approx(want)
    bins = confidence.reliability(p1, labels)
    assert sum(b["n"] for b in bins) == 400 and len(bins) == confidence.DEFAULT_BINS
    assert confidence.nll(logits, labels) == pytest.approx(-np.mean(np.log(p1[np.arange(400), labels])))


def test_picture_statistics_tell_empty_dark_noisy_and_blurred_crops_from_a_cell(synth_tree):
    import cv2

    from cytoedge.edge_app.crop_features import crop_features
    from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess

    spec = PreprocessSpec(64, 64)
    cell = cv2.imread(str(sorted((synth_tree / "im_Parabasal" / "CROPPED").glob("*.bmp"))[0]))
    rng = np.random.default_rng(0)
    crops = {"cell": cell, "black": np.zeros_like(cell), "white": np.full_like(cell, 245),
             "noise": rng.integers(0, 256, cell.shape, dtype=np.uint8), "blur": cv2.GaussianBlur(cell, (0, 0), 6)}
    f = dict(zip(crops, crop_features(np.stack([preprocess(c, spec, normalize=False) for c in crops.values()]))))
    col = {name: i for i, name in enumerate(FEATURES)}
    assert f["black"][col["exposure"]] < f["cell"][col["exposure"]] - 2
    assert f["white"][col["contrast"]] < f["cell"][col["contrast"]] - 2 and f["white"][col["stained"]] == 0
    assert f["cell"][col["stained"]] > 0.2 and f["cell"][col["centred"]] > 0
    assert f["noise"][col["sharpness"]] > f["cell"][col["sharpness"]] + 2
    assert f["blur"][col["sharpness"]] < f["cell"][col["sharpness"]] - 1


def test_uint8_fast_path_gives_the_float_reference_features_bit_for_bit():
    """Crops as uint8 take OpenCV per-channel ops and a histogram percentile; float crops take numpy's
    mean / max / percentile. The card's fitted Gaussian must see the same numbers from both."""
    from cytoedge.edge_app.crop_features import crop_features

    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), np.zeros((48, 48, 3), np.uint8),
             np.full((48, 48, 3), 255, np.uint8)]
    ramp = np.linspace(0, 255, 48 * 48 * 3).reshape(48, 48, 3).astype(np.uint8)  # many distinct levels
    crops += [ramp, ramp[::-1].copy(), (ramp // 3 + 170).astype(np.uint8)]
    pixels = np.stack(crops)
    np.testing.assert_array_equal(crop_features(pixels), crop_features(pixels.astype(np.float32)))


def test_the_statistics_of_schema_3_cards_are_taken_on_a_small_copy_and_recorded_in_the_card():
    """``size``: the statistics of a resized (INTER_AREA) copy, not of the crop; the card records the size,
    and a card without it (schema 2) keeps computing them on the crop as given."""
    import cv2

    from cytoedge.edge_app.crop_features import SMALL, crop_features
    from cytoedge.edge_app.rejection import OpenSetScore, fit_open_set

    rng = np.random.default_rng(4)
    crops = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    crops[:, 40:90, 40:90] //= 3  # a dark blob: a "cell"
    small = np.stack([cv2.resize(c, (SMALL, SMALL), interpolation=cv2.INTER_AREA) for c in crops])
    np.testing.assert_array_equal(crop_features(crops, SMALL), crop_features(small))
    assert not np.allclose(crop_features(crops, SMALL), crop_features(crops))
    np.testing.assert_array_equal(crop_features(small, SMALL), crop_features(small))  # already that size
    np.testing.assert_array_equal(crop_features(crops.astype(np.float32), SMALL), crop_features(crops, SMALL))
    x = rng.normal(size=(40, len(FEATURES)))
    y = np.arange(40) % 2
    s = fit_open_set("image", np.zeros((40, 2)), np.zeros((40, 3)), y, np.zeros((40, 2)), np.zeros((40, 3)), 2,
                     train_image=x, val_image=x)
    assert s.image_size is None and "size" not in s.to_dict()["image"]
    s.image_size = SMALL
    back = OpenSetScore.from_dict(s.to_dict(), 3, 2)
    assert s.to_dict()["image"]["size"] == back.image_size == SMALL
