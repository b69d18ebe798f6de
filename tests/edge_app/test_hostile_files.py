"""Odd and hostile files in a frame source: a decompression bomb, a FIFO, a folder named x.png, a
PNG that makes libpng complain, and a source that blocks when SIGTERM comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.benchmarks.hostile_files import png_bomb
from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.imagefile import read_frame_file
from cytoedge.edge_app.sources import open_source

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """The issue's file: 20000 x 20000 RGB, 1.2 MB on disk, 1.2 GB as an array."""
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", 20000, 20000)


def test_bomb_is_refused_from_its_header_without_decoding(bomb, monkeypatch):
    assert bomb.stat().st_size < 1.5e6

    def no_decode(*args, **kwargs):
        raise AssertionError("the bomb was handed to the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    got = read_frame_file(bomb)
    assert got.image is None and got.problem == "too large" and got.key is not None
    assert "400 MP by its header" in got.error and "not decoded" in got.error
    # below Pillow's own limit our (configurable) limit decides, with the dimensions
    small = png_bomb(bomb.parent / "ten_mp.png", 4000, 2500)
    got = read_frame_file(small, max_pixels=5_000_000)
    assert got.problem == "too large" and "4000x2500 = 10 MP by its header, over the limit of 5 MP" in got.error


def test_pixel_limit_is_configurable(bomb):
    small = png_bomb(bomb.parent / "two_mp.png", 2000, 1000)
    assert read_frame_file(small, max_pixels=1_000_000).problem == "too large"
    got = read_frame_file(small, max_pixels=3_000_000)
    assert got.image is not None and got.image.shape == (1000, 2000, 3)


def test_fifo_and_folder_named_like_images_are_skipped_with_a_line_each(tmp_path):
    os.mkfifo(tmp_path / "a_fifo.png")  # nobody writes it: opening it for reading would block forever
    (tmp_path / "b_folder.png").mkdir()
    cv2.imwrite(str(tmp_path / "c_field.png"), np.full((64, 64, 3), 90, np.uint8))
    for spec in (str(tmp_path), str(tmp_path / "*.png")):  # a folder and a glob list them alike
        with open_source(spec) as src:
            frames = list(src)
        assert [f.name for f in frames] == ["a_fifo.png", "b_folder.png", "c_field.png"]
        assert [f.problem for f in frames[:2]] == ["not a regular file", "not a regular file"]
        assert "a FIFO (named pipe)" in frames[0].error and "a folder" in frames[1].error
        assert frames[2].image is not None


def _damaged_pngs(folder: Path) -> list[Path]:
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))
    data = buf.tobytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    crc = bytearray(data)
    crc[200:260] = bytes(60)  # inside the IDAT chunk: its CRC no longer matches
    (folder / "bad_crc.png").write_bytes(bytes(crc))
    return [folder / "truncated.png", folder / "bad_crc.png"]


def test_damaged_pngs_are_refused_by_their_structure_and_libpng_never_speaks(tmp_path, capfd, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("a damaged file was handed to OpenCV (libpng prints on fd 2 by itself)")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    reasons = [read_frame_file(p).error for p in _damaged_pngs(tmp_path)]
    out, err = capfd.readouterr()
    assert "libpng" not in err and "libpng" not in out
    assert reasons[0].startswith("not a readable image (") and "runcated" in reasons[0], reasons
    assert reasons[1].startswith("not a readable image (") and "IDAT" in reasons[1], reasons


def test_no_file_descriptor_is_redirected_while_a_frame_is_read(tmp_path, monkeypatch):
    """fd 2 is the process's: pointing it elsewhere while the reader thread decodes swallows the other threads'
    log lines (issue 23)."""
    calls = []
    monkeypatch.setattr(os, "dup2", lambda *a, **k: calls.append(a))
    for p in _damaged_pngs(tmp_path):
        read_frame_file(p)
    cv2.imwrite(str(tmp_path / "good.png"), np.full((64, 64, 3), 90, np.uint8))
    assert read_frame_file(tmp_path / "good.png").image is not None
    assert calls == []


REPEATED_RUNS = r"""
import sys
from cytoedge.edge_app.cli import main

model, frames, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(runs):
    rc = main(["--model", model, "--source", frames, "--slide", f"run{i:02d}", "--out", out, "--threads", "1"])
    assert rc == 0, rc
"""


@pytest.mark.slow
def test_every_skip_and_frame_line_reaches_the_terminal_on_every_run(device_model, distinct_frames, tmp_path):
    """Issue 23's done-means: bad files among good ones, 20 runs in one process (the app's three threads log
    while the reader decodes): every skip line and every frame line on every run, and every skipped file by
    name in its run's record in the store."""
    import json
    import sqlite3

    frames = distinct_frames(tmp_path / "frames", 6, "f{:02d}.png")
    bad = []  # between the good ones in name order: f00.png, f00_bad_crc.png, f00_bad_truncated.png, f01.png, ...
    for i in range(3):
        for p in _damaged_pngs(frames):
            bad.append(p.rename(frames / f"f{i:02d}_bad_{p.name}").name)
    runs = 20
    proc = subprocess.run([sys.executable, "-c", REPEATED_RUNS, str(device_model), str(frames),
                           str(tmp_path / "store"), str(runs)], cwd=REPO, capture_output=True, text=True,
                          timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    for name in bad:
        said = [ln for ln in lines if ln.startswith(f"edge-app: skipped {name}: not a readable image")]
        assert len(said) == runs, (name, len(said))
    for i in range(6):
        said = [ln for ln in lines if ln.startswith(f"edge-app: f{i:02d}.png: ")]
        assert len(said) == runs, (i, len(said))
    assert proc.stdout.count(f"6 frames ({len(bad)} skipped: unreadable file {len(bad)})") == runs
    with sqlite3.connect(tmp_path / "store" / "cytoedge.sqlite") as db:
        summaries = [json.loads(s) for (s,) in db.execute("SELECT summary FROM runs ORDER BY id")]
    assert len(summaries) == runs
    for s in summaries:
        assert sorted(f["name"] for f in s["skipped_files"]) == sorted(bad)
        assert all(f["problem"] == "unreadable file" and f["why"].startswith("not a readable image")
                   for f in s["skipped_files"])


def test_app_skips_each_odd_file_in_one_line_and_counts_it(device_model, field_frames, tmp_path, bomb, capfd,
                                                           caplog):
    frames = tmp_path / "frames"
    frames.mkdir()
    os.mkfifo(frames / "a_fifo.png")
    (frames / "b_folder.png").mkdir()
    os.symlink(bomb, frames / "c_bomb.png")
    _damaged_pngs(frames)
    cv2.imwrite(str(frames / "z_field.png"), cv2.imread(str(field_frames[0])))
    rc = main(["--model", str(device_model), "--source", str(frames / "*.png"), "--slide", "odd", "--out",
               str(tmp_path / "store"), "--threads", "1"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert "slide odd: 1 frames (5 skipped: " in out
    assert all(part in out for part in ("not a regular file 2", "too large 1", "unreadable file 2"))
    skip_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skip_lines) == 5 and all("\n" not in line for line in skip_lines)
    assert "libpng" not in err  # never on the terminal by itself (it was: "libpng error: IDAT: CRC error")


BLOCKING = r"""
import sys, time
from pathlib import Path
from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.sources import FileListSource, Frame

class Stuck(FileListSource):
    def frames(self):
        yield from super().frames()
        print("source blocks now", flush=True)
        time.sleep(3600)  # a source that never answers (a hung mount, a camera driver)

model, field, out = sys.argv[1:4]
s = run(AppOptions(model=Path(model), source="", slide="stuck", out=Path(out), threads=1),
        source=Stuck([Path(field)], "stuck"))
print(f"stopped by {s.stopped_by}: {s.frames_done} frames", flush=True)
"""


def test_first_sigterm_stops_a_run_whose_source_blocks(device_model, field_frames, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", BLOCKING, str(device_model), str(field_frames[0]),
                             str(tmp_path / "store")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "source blocks now" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # once
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM: 1 frames" in out and "Traceback" not in err


@pytest.mark.timeout(180)
def test_fifo_in_a_glob_does_not_hang_the_app(device_model, field_frames, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    os.mkfifo(frames / "field_000.png")
    cv2.imwrite(str(frames / "field_001.png"), cv2.imread(str(field_frames[0])))
    s = run(AppOptions(model=device_model, source=str(frames / "field_*.png"), slide="fifo",
                       out=tmp_path / "store", threads=1))
    assert s.frames_done == 1 and dict(s.skipped) == {"not a regular file": 1}
