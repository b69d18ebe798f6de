"""int8 calibration data: the bundle's own training images, preprocessed exactly as the device does.

The calibration array holds the model's input tensors made by the device's own steps
(``preprocess`` and, for a normalised input, ``normalize_crop``), so there is one
preprocessing implementation: :func:`convert.tflite.run_onnx2tf` hands it to onnx2tf
with mean 0 / std 1 (onnx2tf computes ``(x - mean) / std`` itself). onnx2tf also reads
a 20-image sample file from the *current working directory* (else it downloads it,
even for fp32); :func:`write_sample_file` writes that file from our own crops, so the
run never touches the network and never calibrates on onnx2tf's pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.convert.errors import CalibrationError
from cytoedge.convert.samples import ImageSet, stratified
from cytoedge.edge_app.atomic import sha256_file
from cytoedge.edge_app.preprocess import PreprocessSpec, normalize_crop

MIN_CALIB_IMAGES = 20  # below this the activation ranges of a 5-class model are guesswork (and onnx2tf's own set is 20)
DEFAULT_CALIB_IMAGES = 200  # measured: docs/conversion.md#int8-calibration
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
SPACES = ("pixels", "normalized")


@dataclass
class Calibration:
    path: Path  # float32 NHWC: exactly the model's input tensors (the representative dataset, one at a time)
    count: int
    record: dict[str, Any] = field(default_factory=dict)  # what the model card states about it


def select_calibration(train: ImageSet, n: int, num_classes: int, seed: int = 0) -> ImageSet:
    """``n`` training images, stratified over classes; too few is a one-line error, never a fallback."""
    if len(train) < MIN_CALIB_IMAGES:
        raise CalibrationError(f"the {train.source} has only {len(train)} images; int8 calibration needs at least "
                               f"{MIN_CALIB_IMAGES}: train on more data or convert without --int8")
    if n < MIN_CALIB_IMAGES:
        raise CalibrationError(f"--calib-images {n} is below the minimum of {MIN_CALIB_IMAGES}: "
                               f"calibrate on at least {MIN_CALIB_IMAGES} training images (default {DEFAULT_CALIB_IMAGES})")
    if len(train) < n:
        raise CalibrationError(f"the {train.source} has only {len(train)} images, fewer than --calib-images {n}: "
                               f"pass --calib-images {len(train)} or fewer (at least {MIN_CALIB_IMAGES})")
    empty = [k for k, c in enumerate(train.counts(num_classes)) if c == 0]
    if empty:
        raise CalibrationError(f"the {train.source} has no images of class index {empty}: "
                               "calibration must cover every class; re-run edge-train on data with all classes")
    return stratified(train, n, num_classes, seed)


def model_inputs(crops: np.ndarray, spec: PreprocessSpec, space: str) -> np.ndarray:
    """uint8 crops -> the float32 tensors a model with input ``space`` takes (NHWC)."""
    if space == "pixels":
        return crops.astype(np.float32)
    return np.stack([normalize_crop(c, spec) for c in crops]) if len(crops) else crops.astype(np.float32)


def _check(x: np.ndarray, spec: PreprocessSpec, space: str, input_shape: list[int]) -> None:
    want = tuple(input_shape[2:]) + (input_shape[1],)  # NCHW model input -> one NHWC image
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise CalibrationError(f"calibration images are {tuple(x.shape[1:])} after preprocessing but the model input "
                               f"is {want}: the preprocessing in the bundle does not match the model; re-run edge-train")
    if space == "pixels":
        lo, hi = np.zeros(3), np.full(3, 255.0)
    else:
        mean, std = np.asarray(spec.mean), np.asarray(spec.std)
        lo, hi = (0.0 - mean) / std, (1.0 - mean) / std
    tol = 1e-4
    if (x.min(axis=(0, 1, 2)) < lo - tol).any() or (x.max(axis=(0, 1, 2)) > hi + tol).any():
        raise CalibrationError(f"calibration tensors fall outside the {space} range of the model card's preprocessing: "
                               "they were not made by edge_app.preprocess with this bundle's mean/std")


def write_sample_file(crops: np.ndarray, work: Path) -> Path:
    """onnx2tf's sample file (20 x 128 x 128 x 3 float32 in [0, 1]) made from our crops, so it is never downloaded."""
    import cv2

    if len(crops) == 0:
        raise CalibrationError("no images to make onnx2tf's sample file from")
    pick = np.resize(np.arange(len(crops)), 20)
    sample = np.stack([cv2.resize(crops[i], (128, 128), interpolation=cv2.INTER_AREA) for i in pick])
    path = work / ONNX2TF_SAMPLE_FILE
    np.save(path, sample.astype(np.float32) / 255.0)
    return path


def write_calibration(crops: np.ndarray, images: ImageSet, class_names: list[str], spec: PreprocessSpec,
                      space: str, input_shape: list[int], work: Path) -> Calibration:
    """Write ``calib.npy`` into ``work`` after checking the tensors against the model input."""
    if space not in SPACES:
        raise CalibrationError(f"unknown input space {space!r}: choose from {', '.join(SPACES)}")
    x = model_inputs(crops, spec, space)
    _check(x, spec, space, input_shape)
    path = work / "calib.npy"
    np.save(path, np.ascontiguousarray(x, np.float32))
    counts = images.counts(len(class_names))
    record = {
        "source": images.source,
        "images": len(images),
        "per_class": dict(zip(class_names, counts)),
        "space": space,
        "sha256": sha256_file(path),
        "minimum": MIN_CALIB_IMAGES,
    }
    return Calibration(path, len(images), record)
