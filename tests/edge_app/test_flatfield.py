"""edge-app calibrate and --flat-field: the illumination field of an empty area, divided out before the finder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.flatfield import load, measure
from cytoedge.train.data.synth_operator import FrameTruth, Operator, _vignette, render_frame

CAMERA = Operator(window=(640, 480), vignette=0.3, cast=(1.0, 0.95, 0.85), noise=3.0)  # blue-ish, dark corners


def empty_frames(n):
    slide = np.full((480, 640, 3), 235, np.uint8)  # a clean, bright, colourless background
    gain = _vignette(CAMERA.window, CAMERA.vignette, CAMERA.cast)
    rng = np.random.default_rng(0)
    return [render_frame(slide, FrameTruth(i, 0, 0, False, 0.0, 0), None, CAMERA, rng, gain) for i in range(n)]


def test_calibrate_writes_a_field_that_flattens_the_camera(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    for i, f in enumerate(empty_frames(6)):
        cv2.imwrite(str(folder / f"e{i}.png"), f)
    to = tmp_path / "ff.npz"
    assert main(["calibrate", "--source", str(folder), "--board", "rpi4", "--to", str(to), "--frames", "6"]) == 0
    assert "--flat-field" in capsys.readouterr().out
    ff = load(to)
    assert ff.meta["board"] == "rpi4" and ff.meta["frames"] == 6 and 0.2 < ff.meta["vignetting"] < 0.4
    frame = empty_frames(1)[0]
    raw, flat = frame.reshape(-1, 3).astype(float), ff.apply(frame).reshape(-1, 3).astype(float)
    assert raw.mean(axis=1).std() > 10 and flat.mean(axis=1).std() < 5  # the corners no longer darker
    assert np.ptp(raw.mean(axis=0)) > 20 and np.ptp(flat.mean(axis=0)) < 4  # and no colour cast


def test_calibrate_refuses_a_view_with_cells(tmp_path):
    frames = empty_frames(3)
    for f in frames:
        cv2.circle(f, (320, 240), 40, (120, 60, 140), -1)
    with pytest.raises(Exception, match="not empty"):
        measure(frames, {})


def test_a_damaged_flat_field_is_refused_with_one_line(tmp_path):
    bad = tmp_path / "ff.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(Exception, match="run 'edge-app calibrate' again"):
        load(bad)


def test_a_run_with_a_flat_field_records_it(device_model, field_frames, tmp_path):
    import json
    import sqlite3

    from cytoedge.edge_app.app import AppOptions, run

    frame = cv2.imread(str(field_frames[0]))
    ff = measure([np.full_like(frame, 230)], {"board": "rpi4"})
    ff.save(tmp_path / "ff.npz")
    s = run(AppOptions(model=device_model, source=str(field_frames[0]), slide="ff", out=tmp_path / "s", threads=1,
                       flat_field=tmp_path / "ff.npz"))
    assert s.frames_done == 1
    settings = json.loads(sqlite3.connect(tmp_path / "s" / "cytoedge.sqlite").execute("SELECT settings FROM runs")
                          .fetchone()[0])
    assert settings["flat_field"]["board"] == "rpi4" and settings["flat_field"]["file"].endswith("ff.npz")
