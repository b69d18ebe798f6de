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


@pytest.fixture(scope="session")
def distinct_frames(field_frames):
    """``distinct_frames(folder, n)``: ``n`` frames made from the fields, each copy one pixel different.

    A slide scanned field after field needs distinct files: byte-identical files are one physical
    frame, which a slide records once (edge_app.resume).
    """
    import cv2

    fields = [cv2.imread(str(f)) for f in field_frames]

    def make(folder: Path, n: int, name: str = "frame_{:03d}.png") -> Path:
        folder.mkdir(parents=True)
        for i in range(n):
            img = fields[i % len(fields)].copy()
            img[0, 0] = (i % 256, i // 256, 11)
            cv2.imwrite(str(folder / name.format(i)), img)
        return folder

    return make


@pytest.fixture
def model_copy(device_model, tmp_path) -> Path:
    """A private copy of the model folder that a test may damage."""
    dst = tmp_path / "model"
    shutil.copytree(device_model, dst, ignore=shutil.ignore_patterns("work", "bundle", "logs"))
    return dst
