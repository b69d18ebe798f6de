"""Fixtures of the device tests: a real converted model (edge-convert on the shared tiny bundle) and frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def device_model(tiny_bundle, tmp_path_factory) -> Path:
    """A model folder written by the real edge-convert pipeline (ONNX -> onnx2tf -> fp32 + calibrated int8)."""
    from convert.pipeline import ConvertOptions, convert_bundle

    out = (tmp_path_factory.mktemp("device_model") / "model").resolve()
    # The tiny model is trained for a few steps only: the accuracy gate is not what these tests are about.
    convert_bundle(Path(tiny_bundle).resolve(), out, ConvertOptions(int8=True, calib_images=20, max_drop=100.0),
                   log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def field_frames(synth_tree) -> list[Path]:
    """The synthetic slide fields (640 x 480, mixed classes) of the shared synthetic tree."""
    frames = sorted((Path(synth_tree) / "fields").glob("field_*.png"))
    assert frames, "the synthetic tree has no fields"
    return frames


@pytest.fixture
def model_copy(device_model, tmp_path) -> Path:
    """A private copy of the model folder that a test may damage."""
    dst = tmp_path / "model"
    shutil.copytree(device_model, dst, ignore=shutil.ignore_patterns("work", "bundle", "logs"))
    return dst
