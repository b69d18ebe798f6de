"""The manual stage (edge_app.stage, edge-app --stage manual) on a simulated operator
(train.data.synth_operator): a camera window moving over one large synthetic slide."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.stage import (COUNTED, MOVING, CountedCells, StageConfig, StageTracker, coverage_area,
                                     focus_score, work_grey)
from cytoedge.train.data.synth import FIELD_MIX, write_slide
from cytoedge.train.data.synth_operator import Operator, OperatorSource, load_slide, plan_frames

SLIDE = (3000, 2200)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bigslide") / "slide"
    names, p = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
    classes = [names[i] for i in np.random.default_rng(3).choice(len(names), size=60, p=p)]
    write_slide(folder, classes, 11, per_field=len(classes), frame_size=SLIDE)
    truth = json.loads((folder / "truth.json").read_text())["fields"][0]["cells"]
    return load_slide(folder), truth


def op(**kw) -> Operator:
    base = dict(rest_s=1.0, move_s=0.8, cols=2, rows=2, origin=(100, 100), focus_every=2, seed=5)
    return Operator(**{**base, **kw})


def track(slide_image, operator, cfg=None):
    src = OperatorSource(slide_image, operator)
    tracker = StageTracker(cfg)
    views, fields = [], []
    for f in src:
        v, fld = tracker.update(f, f.image)
        views.append(v)
        if fld is not None:
            fields.append(fld)
    last = tracker.finish()
    if last is not None:
        fields.append(last)
    return src.plan, views, fields


def test_the_tracker_follows_the_view_and_takes_one_sharp_still_frame_per_rest(slide):
    image, _ = slide
    plan, views, fields = track(image, op(revisit=True))
    ox, oy = plan[0].x, plan[0].y
    rests = sorted({t.rest for t in plan if t.rest >= 0})
    assert [plan[f.frame.index].rest for f in fields] == rests  # every rest once, in order
    for f in fields:
        t = plan[f.frame.index]
        assert not t.moving and t.in_focus  # never a frame in motion or out of focus
        assert abs(f.view.x - (t.x - ox)) <= 3 and abs(f.view.y - (t.y - oy)) <= 3  # slide coordinates
    assert sum(f.registered for f in fields) >= len(fields) - 1  # drift reset against an earlier field
    for t, v in zip(plan, views):
        if t.moving and abs(t.x - plan[t.index - 1].x) + abs(t.y - plan[t.index - 1].y) > 20:
            assert v.state == MOVING
    # the frames after a field was taken in a rest say so, and are not taken again
    assert any(v.state == COUNTED for v in views)


def test_focus_score_falls_with_defocus_not_with_fewer_cells(slide):
    import cv2

    image, _ = slide
    window = image[100:1060, 100:1380]
    sharp, blurred = focus_score(work_grey(window, 640)), focus_score(work_grey(cv2.GaussianBlur(window, (0, 0), 3), 640))
    assert blurred < 0.6 * sharp
    half = window.copy()
    half[:, 640:] = np.median(window.reshape(-1, 3), axis=0).astype(np.uint8)  # half the cells gone
    assert focus_score(work_grey(half, 640)) > 0.75 * sharp


def test_a_rest_that_never_comes_into_focus_is_not_counted(slide):
    image, _ = slide
    cfg = StageConfig()
    operator = op(focus_every=1, focus_s=5.0, rest_s=1.0)  # every rest blurred throughout (focus_s > rest)
    plan = [t for t in plan_frames(op()) if t.rest != 1] + [t for t in plan_frames(operator) if t.rest == 1]
    plan = sorted(plan, key=lambda t: t.index)
    src = OperatorSource(image, op(), plan=plan)
    tracker = StageTracker(cfg)
    taken = []
    for f in src:
        _, fld = tracker.update(f, f.image)
        if fld is not None:
            taken.append(plan[fld.frame.index].rest)
    assert 1 not in taken and 0 in taken


def test_counted_cells_are_not_counted_again():
    seen = CountedCells(same_cell=0.5)
    assert seen.new_ones([(100, 100, 40, 40), (300, 100, 40, 40)]) == [0, 1]
    # the same cells seen again, a few px off, one cut by the frame's edge, and a new one beside them
    assert seen.new_ones([(103, 98, 40, 40), (300, 100, 20, 40), (150, 100, 40, 40)]) == [2]
    assert seen.n == 3


def test_coverage_area_is_the_union_of_the_fields():
    fields = [(0, 0, 1280, 960), (1024, 0, 1280, 960), (0, 0, 1280, 960)]  # 20 % overlap, one twice
    assert coverage_area(fields) == pytest.approx((1280 + 1024) * 960, rel=0.01)


def matched_truth(cells, truth, origin):
    """Index of the truth cell each stored cell lies on (its centre inside the truth box), or None."""
    ox, oy = origin
    out = []
    for x, y, w, h in cells:
        cx, cy = x + w / 2 + ox, y + h / 2 + oy
        hit = [i for i, t in enumerate(truth) if t["bbox_xywh"][0] <= cx <= t["bbox_xywh"][0] + t["bbox_xywh"][2]
               and t["bbox_xywh"][1] <= cy <= t["bbox_xywh"][1] + t["bbox_xywh"][3]]
        out.append(hit[0] if hit else None)
    return out


def run_operator(device_model, image, operator, out, slide_id):
    src = OperatorSource(image, operator)
    s = run(AppOptions(model=device_model, source="", slide=slide_id, out=out, threads=1, stage="manual"),
            source=src)
    return src.plan, s


def test_a_slide_imaged_twice_over_the_same_area_counts_its_cells_once(device_model, slide, tmp_path):
    image, truth = slide
    plan, s = run_operator(device_model, image, op(revisit=True), tmp_path / "store", "twice")
    rests = len({t.rest for t in plan if t.rest >= 0})
    assert s.stage == "manual" and s.frames_done == rests  # one record per settled field, the revisits too
    assert s.seen_again > 0  # the revisited row and the overlaps: found again, not counted again
    conn = sqlite3.connect(tmp_path / "store" / "cytoedge.sqlite")
    fields = conn.execute("SELECT stage_x, stage_y, focus, name FROM frames WHERE slide_id = 'twice'").fetchall()
    assert all(x is not None and f > 0 for x, _, f, _ in fields)
    cells = conn.execute("SELECT slide_x, slide_y, w, h FROM cells WHERE slide_id = 'twice'").fetchall()
    assert cells and all(c[0] is not None for c in cells)
    hits = [h for h in matched_truth(cells, truth, (plan[0].x, plan[0].y)) if h is not None]
    assert len(hits) >= 0.8 * len(cells)  # the slide coordinates land on the true cells
    assert len(hits) - len(set(hits)) <= max(1, 0.02 * len(set(hits)))  # each physical cell once
    # a run that stays longer on every field records the same slide
    plan3, s3 = run_operator(device_model, image, op(revisit=True, rest_s=4.0), tmp_path / "store", "long")
    assert s3.frames_done == rests
    assert abs(s3.cells - s.cells) <= max(2, 0.02 * s.cells)
    assert s3.views["counted"] > s.views["counted"]  # the longer rests were watched, not counted


def test_a_fixed_stage_counts_every_frame_and_a_camera_defaults_to_manual(device_model, slide, tmp_path):
    image, _ = slide
    short = op(cols=1, rows=1, rest_s=0.5, focus_every=0)
    s = run(AppOptions(model=device_model, source="", slide="fixed", out=tmp_path / "s", threads=1, stage="fixed"),
            source=OperatorSource(image, short))
    assert s.stage == "fixed" and s.frames_done == 5  # today's behaviour: every frame a record
    s = run(AppOptions(model=device_model, source="", slide="cam", out=tmp_path / "s", threads=1),
            source=OperatorSource(image, short, live=True))
    assert s.stage == "manual" and s.frames_done == 1


def test_a_picam_run_records_the_camera_settings_it_locked(device_model, tmp_path, monkeypatch):
    import sys
    import types

    from test_sources import FakePicamera2

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    s = run(AppOptions(model=device_model, source="picam", slide="p", out=tmp_path, threads=1, max_frames=1,
                       camera_size=(640, 480), camera_lock=0.05, stage="fixed"))  # a flat fake view never settles
    assert s.frames_done == 1
    settings = json.loads(sqlite3.connect(tmp_path / "cytoedge.sqlite").execute("SELECT settings FROM runs")
                          .fetchone()[0])
    cam = settings["camera"]
    assert cam["locked"] and cam["controls"]["AeEnable"] is False and cam["controls"]["AwbEnable"] is False
    assert cam["controls"] == {**FakePicamera2.made[-1].calls[0], "ColourGains": list(cam["controls"]["ColourGains"])}
