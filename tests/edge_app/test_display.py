"""Annotated frames: group colours where the boxes are, the status bar, saving, no window without a display."""

from __future__ import annotations

import cv2
import numpy as np

from cytoedge.edge_app.classes import GROUP_COLOURS_BGR
from cytoedge.edge_app.display import Display, annotate, display_available, status_line


def test_boxes_take_their_group_colour():
    frame = np.full((480, 640, 3), 255, np.uint8)
    boxes = [(100, 100, 80, 80), (300, 200, 60, 90)]
    out = annotate(frame, boxes, ["parabasal 0.93", "? koilocytotic"], ["normal", "unknown"], "frame 1")
    assert frame.min() == 255  # the input is not drawn on
    assert tuple(out[140, 100]) == GROUP_COLOURS_BGR["normal"]  # left edge of box 1
    assert tuple(out[250, 300]) == GROUP_COLOURS_BGR["unknown"]
    assert (out[-2, 0:10] == 32).all()  # the dark status bar along the bottom


def test_grey_frame_is_annotated_in_colour():
    out = annotate(np.zeros((100, 100), np.uint8), [(10, 10, 20, 20)], ["x"], ["abnormal"])
    assert out.shape == (100, 100, 3) and tuple(out[20, 10]) == GROUP_COLOURS_BGR["abnormal"]


def test_saved_annotated_frames_and_no_window_without_display(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not display_available()
    d = Display(show=True, save_dir=tmp_path / "annotated")
    assert not d.window and d.active and "no display" in caplog.text
    assert d.update(np.zeros((50, 60, 3), np.uint8), "000003")
    img = cv2.imread(str(tmp_path / "annotated" / "000003.jpg"))
    assert img.shape == (50, 60, 3) and d.saved == 1
    assert not Display().active


def test_status_line_names_every_stage():
    line = status_line(4.25, {"find": 9.6, "classify": 30.2, "store": 2.0}, 28, 7)
    assert line == "frame 7 | 4.2 frames/s | find 10 ms | classify 30 ms | store 2 ms | 28 cells"
