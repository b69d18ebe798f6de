"""Calibration data: stratified training images, preprocessed exactly as the device does; too few is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoedge.convert.calibration import (MIN_CALIB_IMAGES, ONNX2TF_SAMPLE_FILE, select_calibration, write_calibration,
                                 write_sample_file)
from cytoedge.convert.errors import CalibrationError
from cytoedge.convert.samples import ImageSet, load_crops, split_images
from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess


def image_set(counts: list[int]) -> ImageSet:
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)]).astype(np.int64)
    return ImageSet("test set", [Path(f"img_{i}.png") for i in range(len(labels))], labels)


def test_selection_is_stratified_over_classes():
    picked = select_calibration(image_set([50, 50, 10, 50, 50]), 40, 5)
    assert len(picked) == 40
    assert picked.counts(5) == [8, 8, 8, 8, 8]
    picked = select_calibration(image_set([50, 50, 3, 50, 50]), 40, 5)
    assert picked.counts(5)[2] == 3 and sum(picked.counts(5)) == 40  # a small class gives all it has
    assert len(set(picked.paths)) == 40


def test_too_few_calibration_images_is_refused():
    with pytest.raises(CalibrationError, match=f"minimum of {MIN_CALIB_IMAGES}"):
        select_calibration(image_set([50] * 5), MIN_CALIB_IMAGES - 1, 5)
    with pytest.raises(CalibrationError, match="only 30 images, fewer than --calib-images 40"):
        select_calibration(image_set([6] * 5), 40, 5)
    with pytest.raises(CalibrationError, match="only 15 images; int8 calibration needs at least 20"):
        select_calibration(image_set([3] * 5), 15, 5)  # the default asks for the whole split when it is small
    with pytest.raises(CalibrationError, match="no images of class"):
        select_calibration(image_set([10, 10, 0, 10, 10]), 20, 5)


def test_cli_refuses_too_few_calibration_images_before_converting(tiny_bundle, tmp_path, convert_cli):
    out = tmp_path / "model"
    rc, so, se = convert_cli([str(tiny_bundle), "--out", str(out), "--int8", "--calib-images", "5"])
    assert rc == 2
    assert se.count("\n") == 1 and se.startswith("edge-convert: error: --calib-images 5 is below the minimum of 20")
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("space", ["pixels", "normalized"])
def test_calibration_tensors_are_the_device_preprocessing(tiny_bundle, tmp_path, space):
    from cytoedge.train.bundle import read_bundle

    bundle = read_bundle(tiny_bundle)
    spec = bundle.preprocessing
    train = split_images(bundle.read_split(), "train", bundle.num_classes)
    picked = select_calibration(train, MIN_CALIB_IMAGES, bundle.num_classes)
    crops = load_crops(picked, spec)
    cal = write_calibration(crops, picked, bundle.class_names, spec, space, [1, 3, spec.size, spec.size], tmp_path)
    x = np.load(cal.path)
    import cv2

    want = np.stack([preprocess(cv2.imread(str(p)), spec, normalize=space == "normalized") for p in picked.paths])
    np.testing.assert_array_equal(x, want)  # bit for bit: one preprocessing implementation
    assert cal.record["images"] == MIN_CALIB_IMAGES and cal.record["space"] == space


def test_calibration_that_does_not_fit_the_model_input_is_refused(tmp_path):
    spec = PreprocessSpec(size=32, resize=32)
    crops = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    images = image_set([4] * 5)
    names = [f"c{k}" for k in range(5)]
    with pytest.raises(CalibrationError, match=r"model input is \(48, 48, 3\)"):
        write_calibration(crops, images, names, spec, "pixels", [1, 3, 48, 48], tmp_path)
    from cytoedge.convert.calibration import _check, model_inputs

    # 0..255 pixels handed over as if they were normalised tensors: the classic missing-normalisation mistake
    with pytest.raises(CalibrationError, match="outside the normalized range"):
        _check(model_inputs(crops, spec, "pixels"), spec, "normalized", [1, 3, 32, 32])
    _check(model_inputs(crops, spec, "normalized"), spec, "normalized", [1, 3, 32, 32])


def test_onnx2tf_sample_file_is_made_from_our_images(tmp_path):
    crops = np.full((3, 40, 40, 3), 255, np.uint8)
    path = write_sample_file(crops, tmp_path)
    assert path.name == ONNX2TF_SAMPLE_FILE
    sample = np.load(path)
    assert sample.shape == (20, 128, 128, 3) and sample.dtype == np.float32
    assert sample.min() == 1.0 and sample.max() == 1.0
