"""One physical frame is one record: a rerun resumes (files by content, video by frame index, a camera goes
on), --rescan replaces, and a kill -9 / rerun loop ends with the counts of one uninterrupted run."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.benchmarks.kill_resume import committed_frames
from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.errors import StoreError
from cytoedge.edge_app.resume import file_key
from cytoedge.edge_app.sources import CameraSource, open_source
from cytoedge.edge_app.store import CellResult, Store
from cytoedge.edge_app.web.reviews import add_review

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]


def slide_record(out: Path, slide: str) -> dict:
    """What the report and the triage count, plus every frame's name and cells."""
    with Store(out, create=False) as s:
        c = s.slide_counts(slide)
        frames = sorted((r[0], r[1]) for r in s.conn.execute("SELECT name, n_cells FROM frames WHERE slide_id = ?",
                                                              (slide,)))
        crops = s.conn.execute("SELECT COUNT(crop_path) FROM cells WHERE slide_id = ?", (slide,)).fetchone()[0]
        assert s.integrity_check() == "ok"
    files = sorted(p.name for p in (out / "crops" / slide).glob("*")) if (out / "crops" / slide).is_dir() else []
    assert len(files) == crops, "every crop file is named by a cell and every named crop exists"
    return {"frames": c.frames, "cells": c.cells, "per_class": c.per_class, "per_group": c.per_group,
            "by_frame": frames, "crops": crops}


def test_rerun_skips_committed_frames_undecoded_and_counts_nothing_twice(device_model, field_frames, distinct_frames,
                                                                         tmp_path, monkeypatch, capsys, caplog):
    src = distinct_frames(tmp_path / "frames", 4)
    opts = AppOptions(model=device_model, source=str(src), slide="s1", out=tmp_path / "store", threads=1)
    first = run(opts)
    before = slide_record(opts.out, "s1")
    assert first.frames_done == 4 and before["frames"] == 4

    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    again = run(opts)
    assert again.frames_done == 0 and again.resumed == 4 and not decoded  # hashed, never decoded
    assert slide_record(opts.out, "s1") == before  # the report and triage count each frame once

    # the folder copied elsewhere (new paths and mtimes) and one field saved twice under another name
    moved = tmp_path / "copied"
    shutil.copytree(src, moved, copy_function=shutil.copy)
    shutil.copy(src / "frame_002.png", moved / "frame_002 (copy).png")
    cv2.imwrite(str(moved / "frame_100.png"), cv2.imread(str(field_frames[0])))  # a new field
    monkeypatch.setattr(cv2, "imdecode", real)
    assert main(["--model", str(device_model), "--source", str(moved), "--slide", "s1", "--out", str(opts.out),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "slide s1: 1 frames (1 skipped: duplicate 1; 4 already recorded, not counted again)" in out
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["skipped frame_002 (copy).png: the same frame as frame_002.png, which this slide already holds"]
    assert slide_record(opts.out, "s1")["frames"] == 5


def test_video_resumes_at_the_next_frame_index(device_model, field_frames, tmp_path):
    video = tmp_path / "slide.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    fields = [cv2.imread(str(f)) for f in field_frames]
    for i in range(6):
        writer.write(fields[i % len(fields)])
    writer.release()
    opts = AppOptions(model=device_model, source=str(video), slide="v", out=tmp_path / "store", threads=1,
                      max_frames=3)
    assert run(opts).frames_done == 3
    opts.max_frames = None
    second = run(opts)
    assert second.resumed == 3 and second.frames_done == 3
    with Store(opts.out, create=False) as s:
        names = [r[0] for r in s.conn.execute("SELECT name FROM frames ORDER BY seq")]
    assert names == [f"slide.avi#{i}" for i in range(6)]
    assert run(opts).frames_done == 0  # nothing left


def test_camera_goes_on(device_model, field_frames, tmp_path):
    field = cv2.imread(str(field_frames[0]))

    class Camera:
        def __init__(self):
            self.left = 2

        def read(self):
            time.sleep(0.01)
            if self.left <= 0:
                return False, None
            self.left -= 1
            return True, field  # the same picture twice: a camera's frames are new frames

        def release(self):
            pass

    opts = AppOptions(model=device_model, source="", slide="cam", out=tmp_path / "store", threads=1, max_frames=2,
                      stage="fixed")  # a fixed stage: every camera frame a record (manual: edge_app.stage)
    for expected in (2, 4):
        run(opts, source=CameraSource(Camera, "cam:test", give_up_after=5.0))
        assert slide_record(opts.out, "cam")["frames"] == expected


def test_rescan_replaces_the_earlier_records(device_model, distinct_frames, tmp_path, capsys):
    src = distinct_frames(tmp_path / "frames", 3)
    out = tmp_path / "store"
    args = ["--model", str(device_model), "--source", str(src), "--slide", "r", "--out", str(out), "--threads", "1",
            "--save-crops", "all"]
    assert main(args) == 0
    once = slide_record(out, "r")
    assert main(args + ["--rescan"]) == 0
    assert slide_record(out, "r") == once  # replaced, not added: same frames, cells and crop files
    capsys.readouterr()
    with Store(out, create=False) as s:  # a reviewer's work is never dropped by a rescan
        cell = s.conn.execute("SELECT id, class_name FROM cells LIMIT 1").fetchone()
        add_review(s, cell[0], cell[1], "A. Reviewer")
    assert main(args + ["--rescan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 1 review(s)" in err and "export-reviews" in err
    assert slide_record(out, "r") == once


def test_the_store_refuses_a_second_record_of_a_frame(tmp_path):
    s = Store(tmp_path)
    s.open_slide("S", CLASSES, {c: "normal" for c in CLASSES})
    run_id = s.start_run("S", source="x", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b", threads=1,
                         settings={})
    cell = CellResult((0, 0, 10, 10), "parabasal", "normal", 0.9, 1.0, False)
    key = file_key(b"one field")
    s.add_frame("S", run_id, name="a.png", size=(64, 64), cells=[cell], crops=[np.zeros((8, 8, 3), np.uint8)], key=key)
    with pytest.raises(StoreError, match="already recorded on slide S"):  # e.g. a second edge-app on the slide
        s.add_frame("S", run_id, name="b.png", size=(64, 64), cells=[cell], key=key)
    with pytest.raises(sqlite3.IntegrityError):  # the unique index holds even below the API
        s.conn.execute("INSERT INTO frames (slide_id, run_id, seq, name, captured, width, height, n_cells, frame_key)"
                       " VALUES ('S', ?, 9, 'c', '', 1, 1, 0, ?)", (run_id, key))
    assert s.frame_keys("S") == {key: "a.png"} and s.slide_counts("S").cells == 1
    s.close()


def test_source_marks_committed_frames_before_decoding(distinct_frames, tmp_path):
    src = distinct_frames(tmp_path / "frames", 3)
    keys = {file_key((src / f"frame_{i:03d}.png").read_bytes()): f"frame_{i:03d}.png" for i in (0, 2)}
    with open_source(str(src)) as source:
        source.resume_with(keys.get)
        frames = list(source)
    assert [f.committed_as for f in frames] == ["frame_000.png", None, "frame_002.png"]
    assert [f.image is None for f in frames] == [True, False, True]


def _start(device_model, source: Path, out: Path, *, gated: bool = False) -> subprocess.Popen:
    """edge-app on ``source``; ``gated``: the source never ends after its last frame (gated_edge_app.py), so the
    run can only end by being killed."""
    cmd = [str(Path(__file__).with_name("gated_edge_app.py"))] if gated else ["-m", "cytoedge.edge_app"]
    return subprocess.Popen([sys.executable, *cmd, "--model", str(device_model), "--source", str(source),
                             "--slide", "k", "--out", str(out), "--threads", "1", "--save-crops", "all", "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_and_rerun_loop_counts_like_one_clean_run(device_model, distinct_frames, tmp_path):
    n = 30
    src = distinct_frames(tmp_path / "frames", n)
    clean = tmp_path / "clean"
    proc = _start(device_model, src, clean)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    expected = slide_record(clean, "k")
    assert expected["frames"] == n

    out = tmp_path / "killed"
    rng = random.Random(12)
    targets = sorted(rng.sample(range(n - 4), 6))
    for target in targets:  # kill -9 once the store holds `target` frames, then a bit later: in start-up, a
        proc = _start(device_model, src, out, gated=True)  # frame, a crop write or a commit. The gated source
        deadline = time.monotonic() + 120                  # never ends, so the kill always cuts a run, whatever
        while committed_frames(out / "cytoedge.sqlite") < target and proc.poll() is None:  # the host's speed
            assert time.monotonic() < deadline, "the app committed too few frames in 120 s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.25))
        assert proc.poll() is None, f"a gated run ended by itself: {proc.stderr.read()}"
        proc.kill()
        proc.wait()
    proc = _start(device_model, src, out)  # and one run to the end
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert slide_record(out, "k") == expected
    with Store(out, create=False) as s:
        ends = s.conn.execute("SELECT COUNT(ended), COUNT(*) FROM runs").fetchone()
    # the killed runs are on record, marked interrupted (ended NULL); a kill in start-up, before the run is
    # registered, leaves no row, so at most kills + 1 rows and at least the last run and one killed one
    assert ends[0] == 1 and 2 <= ends[1] <= len(targets) + 1
    assert not list(out.rglob("*.tmp")), "temporary files of killed runs were swept"


def test_summary_json_records_resumed_frames(device_model, distinct_frames, tmp_path):
    src = distinct_frames(tmp_path / "frames", 2)
    opts = AppOptions(model=device_model, source=str(src), slide="j", out=tmp_path / "store", threads=1)
    run(opts)
    run(opts)
    with Store(opts.out, create=False) as s:
        summaries = [json.loads(r[0]) for r in s.conn.execute("SELECT summary FROM runs ORDER BY id")]
    assert [(x["frames_done"], x["resumed"]) for x in summaries] == [(2, 0), (0, 2)]
