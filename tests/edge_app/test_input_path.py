"""The classifier's input path: crops resized straight into a batch, written into the interpreter's input in one
vectorised pass, exactly the tensor the reference steps (preprocess + quantize) make; no padding crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.classifier import Classifier
from cytoedge.edge_app.finder import crops_of, find_cells
from cytoedge.edge_app.preprocess import (PreprocessSpec, Quantization, pixels_to_input, preprocess, quantize,
                                 resize_center_crop, resize_into)


@pytest.fixture(scope="module")
def crops(field_frames):
    """Real crops of the synthetic fields (square, 40-200 px), plus odd shapes a caller may pass."""
    out = []
    for f in field_frames:
        frame = cv2.imread(str(f))
        out += crops_of(frame, find_cells(frame))
    rng = np.random.default_rng(0)
    out += [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((30, 50, 3), (200, 90, 3), (64, 64, 3))]
    return out


@pytest.mark.parametrize("size, resize", [(64, 64), (64, 72), (32, 32), (96, 96)])
def test_resize_into_is_bit_identical_to_resize_center_crop(crops, size, resize):
    spec = PreprocessSpec(size=size, resize=resize)
    out = np.empty((size, size, 3), np.uint8)
    for c in crops:
        resize_into(c, spec, out)
        np.testing.assert_array_equal(out, resize_center_crop(c, spec))


QUANTS = {
    "int8 pixels (scale 1, zero point -128)": ("pixels", Quantization(1.0, -128, "int8"), np.int8),
    "uint8 pixels (scale 1)": ("pixels", Quantization(1.0, 0, "uint8"), np.uint8),
    "uint8 pixels, calibrated scale (older cards)": ("pixels", Quantization(0.99216, 0, "uint8"), np.uint8),
    "float pixels": ("pixels", Quantization(), np.float32),
    "int8 normalised": ("normalized", Quantization(0.0186, -14, "int8"), np.int8),
    "float normalised": ("normalized", Quantization(), np.float32),
}


@pytest.mark.parametrize("name", list(QUANTS))
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_one_pass_input_equals_the_reference_steps(crops, name, order):
    space, quant, dtype = QUANTS[name]
    spec = PreprocessSpec(size=48, resize=48, channel_order=order)
    stage = np.empty((len(crops), 48, 48, 3), np.uint8)
    for i, c in enumerate(crops):
        resize_into(c, spec, stage[i])
    out = np.zeros(stage.shape, dtype)
    pixels_to_input(stage, spec, space, quant, out)
    ref = quantize(np.stack([preprocess(c, spec, normalize=space != "pixels") for c in crops]), quant)
    assert ref.dtype == out.dtype
    np.testing.assert_array_equal(out, ref)


def test_frames_are_classified_in_exactly_their_crops_and_match_one_at_a_time(device_model, crops):
    clf = Classifier(device_model, threads=1)
    assert clf.max_batch == 8 and len(crops) > 8
    n = 11  # one full invocation of 8 and one of 3: never padded up to a power of two
    logits, embs = clf.raw_outputs(crops[:n])
    assert clf.invocations == 2 and clf._batch == 3
    assert clf._interp.get_input_details()[0]["shape"][0] == 3
    single = [clf.raw_outputs([c]) for c in crops[:n]]
    np.testing.assert_array_equal(logits, np.concatenate([s[0] for s in single]))
    np.testing.assert_array_equal(embs, np.concatenate([s[1] for s in single]))


def test_the_classifier_feeds_what_the_card_says(device_model, crops):
    """The input tensor the classifier writes is quantize(preprocess(crop)) with the card's quantisation."""
    clf = Classifier(device_model, threads=1)
    entry = clf.entry
    clf._resize(4)
    clf.write_input(crops[:4])
    written = clf._interp.get_tensor(clf._input["index"])
    ref = quantize(np.stack([preprocess(c, clf.spec, normalize=entry.input.space != "pixels") for c in crops[:4]]),
                   entry.input.quant)
    np.testing.assert_array_equal(written, ref)
