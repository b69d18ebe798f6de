"""The cell finder on drawn frames whose cell outlines are known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.finder import FinderConfig, crop_square, crops_of, find_cells, square_box
from edge_drawing import DrawnCell, draw_field, grid_cells, mask_iou

SHAPE = (960, 1280)


def _best_ious(cells: list[DrawnCell], dets, shape=SHAPE, scale: float = 1.0) -> list[float]:
    out = []
    for c in cells:
        truth = c.mask((round(shape[0]), round(shape[1])))
        best = 0.0
        for d in dets:
            m = np.zeros_like(truth)
            cv2.drawContours(m, [np.round(d.contour / scale).astype(np.int32)], -1, 255, -1)
            best = max(best, mask_iou(truth, m))
        out.append(best)
    return out


def test_finds_every_separate_cell_and_ignores_debris():
    cells = grid_cells(30, seed=3)
    dets = find_cells(draw_field(cells, seed=3))
    assert len(dets) == 30  # the specks and the fibre are filtered out
    assert min(_best_ious(cells, dets)) > 0.8


def test_touching_cells_are_split_and_no_split_merges_them():
    cells = [DrawnCell((400, 400), (80, 70), 0), DrawnCell((520, 420), (75, 70), 0)]
    frame = draw_field(cells, debris=False)
    dets = find_cells(frame)
    assert len(dets) == 2
    assert min(_best_ious(cells, dets)) > 0.8
    assert len(find_cells(frame, FinderConfig(split=False))) == 1


def test_an_empty_field_has_no_cells():
    assert find_cells(draw_field([], seed=5)) == []


def test_4k_frame_is_found_at_reduced_scale_with_full_resolution_boxes():
    cells = grid_cells(12, seed=1)
    frame = cv2.resize(draw_field(cells, seed=1), (3840, 2880), interpolation=cv2.INTER_LINEAR)
    dets = find_cells(frame)
    assert len(dets) == 12
    assert max(d.box[0] + d.box[2] for d in dets) > 1280  # coordinates are the 4K frame's
    assert min(_best_ious(cells, dets, scale=3.0)) > 0.75


def test_area_limits_drop_cells_outside_them():
    cells = [DrawnCell((300, 300), (30, 30), 0), DrawnCell((800, 500), (120, 110), 0)]
    frame = draw_field(cells, debris=False)
    assert len(find_cells(frame)) == 2
    big_only = find_cells(frame, FinderConfig(min_area=0.01))
    assert [d.box[0] > 600 for d in big_only] == [True]
    small_only = find_cells(frame, FinderConfig(max_area=0.01))
    assert [d.box[0] < 400 for d in small_only] == [True]


def test_grey_and_16_bit_frames_work():
    cells = grid_cells(6, seed=2)
    frame = draw_field(cells, seed=2)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert len(find_cells(grey)) == 6
    assert len(find_cells(frame.astype(np.uint16) * 257)) == 6


def test_crops_are_square_with_margin_and_padded_at_the_border():
    cells = [DrawnCell((40, 300), (35, 30), 0), DrawnCell((700, 500), (60, 40), 0)]
    frame = draw_field(cells, debris=False)
    dets = find_cells(frame, FinderConfig(margin=0.2))
    edge = next(d for d in dets if d.box[0] < 100)
    assert edge.touches_edge and edge.crop_box[0] < 0
    for d, crop in zip(dets, crops_of(frame, dets)):
        side = d.crop_box[2]
        assert crop.shape == (side, side, 3)
        assert side >= max(d.box[2], d.box[3]) * 1.39


def test_square_box_and_crop_square_geometry():
    assert square_box((10, 20, 30, 10), 0.0) == (10, 10, 30)
    frame = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert crop_square(frame, (2, 3, 4)).tolist() == frame[3:7, 2:6].tolist()
    padded = crop_square(frame, (8, 8, 4))
    assert padded.shape == (4, 4) and padded[-1, -1] == frame[9, 9]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="min_area < max_area"):
        FinderConfig(min_area=0.1, max_area=0.05)
    with pytest.raises(ValueError, match="work_width"):
        FinderConfig(work_width=10)
