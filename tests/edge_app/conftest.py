"""Fixtures of the device tests: the synthetic fields, and a copy of ``device_model`` (tests/conftest.py) to damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
