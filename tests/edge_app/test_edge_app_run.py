"""edge-app end to end with a real converted model: folder source, odd files, a camera that drops out,
signals, kill -9, and a run with torch / tensorflow / onnx imports blocked."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.edge_app.app import AppOptions, check_frame, run
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.errors import SourceError
from cytoedge.edge_app.sources import CameraSource
from cytoedge.edge_app.store import Store

REPO = Path(__file__).resolve().parents[2]


def committed_frames(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            return con.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def assert_store_consistent(folder: Path) -> Store:
    """PRAGMA integrity_check, every committed frame's cells present, every named crop on disk."""
    s = Store(folder, create=False)
    assert s.integrity_check() == "ok"
    rows = s.conn.execute("SELECT f.id, f.n_cells, COUNT(c.id) FROM frames f LEFT JOIN cells c ON c.frame_id = f.id "
                          "GROUP BY f.id").fetchall()
    assert rows and all(n == k for _, n, k in rows)
    for (path,) in s.conn.execute("SELECT crop_path FROM cells WHERE crop_path IS NOT NULL"):
        assert (folder / path).is_file() and cv2.imread(str(folder / path)) is not None
    return s


def test_folder_source_end_to_end(device_model, field_frames, tmp_path, capsys):
    out = tmp_path / "store"
    rc = main(["--model", str(device_model), "--source", str(field_frames[0].parent), "--slide", "demo",
               "--out", str(out), "--save-annotated", "--save-crops", "all", "--threads", "1", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0 and f"slide demo: {len(field_frames)} frames (0 skipped)" in printed
    s = assert_store_consistent(out)
    counts = s.slide_counts("demo")
    truth = json.loads((field_frames[0].parent / "truth.json").read_text())
    labelled = sum(len(f["cells"]) for f in truth["fields"])
    assert counts.frames == len(field_frames) and 0.5 * labelled <= counts.cells <= 1.5 * labelled
    assert sum(counts.per_group.values()) == counts.cells
    run_row = s.conn.execute("SELECT format, model_sha256, ended, summary FROM runs").fetchone()
    card = json.loads((device_model / "model_card.json").read_text())
    assert run_row["format"] == "tflite-int8" and run_row["ended"]
    assert run_row["model_sha256"] == card["artifacts"]["tflite-int8"]["sha256"]
    assert json.loads(run_row["summary"])["frames_done"] == len(field_frames)
    assert s.conn.execute("SELECT COUNT(crop_path) FROM cells").fetchone()[0] == counts.cells  # --save-crops all
    assert len(list((out / "annotated" / "demo").glob("*.jpg"))) == len(field_frames)
    s.close()
    assert main(["report", "--slide", "demo", "--out", str(out), "--report-format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["cells"] == counts.cells and "not a diagnosis" in rep["disclaimer"]


@pytest.mark.parametrize("image, converted, skipped", [
    (None, "", "no image (None)"),
    (np.zeros((0, 0, 3), np.uint8), "", "empty image"),
    (np.zeros((40, 40, 3, 2), np.uint8), "", "not an image"),
    (np.zeros((10, 400, 3), np.uint8), "", "too small"),
    (np.zeros((100, 9000), np.uint8), "", "too large"),
    (np.zeros((64, 64), np.uint8), "grey", ""),
    (np.zeros((64, 64, 4), np.uint8), "RGBA", ""),
    (np.zeros((64, 64, 3), np.uint16), "16-bit", ""),
    (np.zeros((64, 64, 1), np.float32), "float32+grey", ""),
    (np.zeros((64, 64, 3), np.uint8), "", ""),
])
def test_check_frame_converts_or_skips(image, converted, skipped):
    out, conv, why = check_frame(image, 32, 8192)
    assert conv == converted and why.startswith(skipped)
    assert (out is None) == bool(skipped)
    if out is not None:
        assert out.dtype == np.uint8 and out.shape[2] == 3


def test_odd_and_corrupt_files_are_converted_or_skipped_and_counted(device_model, field_frames, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    field = cv2.imread(str(field_frames[0]))
    cv2.imwrite(str(frames / "a_colour.png"), field)
    cv2.imwrite(str(frames / "b_grey.png"), cv2.cvtColor(field, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(frames / "c_rgba.png"), cv2.cvtColor(field, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(frames / "d_16bit.tif"), field.astype(np.uint16) * 257)
    (frames / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (frames / "f_empty.jpg").write_bytes(b"")
    cv2.imwrite(str(frames / "g_tiny.png"), field[:8, :8])
    s = run(AppOptions(model=device_model, source=str(frames), slide="odd", out=tmp_path / "store", threads=1))
    assert s.frames_read == 7 and s.frames_done == 4
    assert dict(s.skipped) == {"unreadable file": 2, "too small": 1}
    assert dict(s.converted) == {"grey": 1, "RGBA": 1, "16-bit": 1}
    store = assert_store_consistent(tmp_path / "store")
    names = [r[0] for r in store.conn.execute("SELECT name FROM frames ORDER BY seq")]
    assert names == ["a_colour.png", "b_grey.png", "c_rgba.png", "d_16bit.tif"]
    n = [r[0] for r in store.conn.execute("SELECT n_cells FROM frames ORDER BY seq")]
    assert n[0] > 0 and n[2] == n[0] and n[3] == n[0]  # alpha and 16-bit lose nothing
    summary = json.loads(store.conn.execute("SELECT summary FROM runs").fetchone()[0])
    assert summary["skipped"] == {"unreadable file": 2, "too small": 1}
    store.close()


def test_tampered_model_is_refused_with_one_line(model_copy, field_frames, tmp_path, capsys):
    path = model_copy / "model_int8.tflite"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # the last byte changed, whatever it was
    rc = main(["--model", str(model_copy), "--source", str(field_frames[0]), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "does not match its model card" in err
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_camera_that_drops_out_is_reopened_then_given_up(device_model, field_frames, tmp_path):
    field = cv2.imread(str(field_frames[0]))
    opened = []

    class Camera:
        def __init__(self, frames: int):
            self.left = frames

        def read(self):
            time.sleep(0.01)
            if self.left <= 0:
                return False, None
            self.left -= 1
            return True, field

        def release(self):
            pass

    def opener():
        opened.append(1)
        if len(opened) > 2:
            raise OSError("camera unplugged")
        return Camera(3)

    cam = CameraSource(opener, "cam:test", give_up_after=1.0, backoff=(0.05, 0.2))
    with pytest.raises(SourceError, match="delivered no frame for 1 s after 1 reopen"):
        run(AppOptions(model=device_model, source="", slide="live", out=tmp_path / "store", threads=1,
                       stage="fixed"), source=cam)  # every frame a record (a camera defaults to --stage manual)
    s = assert_store_consistent(tmp_path / "store")
    frames = s.slide_counts("live").frames
    assert frames >= 2  # frames from before and after the reopen were committed
    summary = json.loads(s.conn.execute("SELECT summary FROM runs").fetchone()[0])
    assert summary["reopened"] == 1 and summary["frames_done"] == frames
    s.close()


def start_app(device_model, source: Path, out: Path, slide: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cytoedge.edge_app", "--model", str(device_model), "--source", str(source), "--slide", slide,
         "--out", str(out), "--threads", "1", "--save-crops", "all", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_frames(proc: subprocess.Popen, db: Path, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while committed_frames(db) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the app committed too few frames in time"
        time.sleep(0.05)


def test_kill_9_leaves_every_committed_frame_intact(device_model, distinct_frames, tmp_path):
    source = distinct_frames(tmp_path / "frames", 80)
    out = tmp_path / "store"
    proc = start_app(device_model, source, out, "k9")
    wait_for_frames(proc, out / "cytoedge.sqlite", 3)
    proc.kill()  # SIGKILL, at whatever point of a frame it is
    proc.communicate()
    s = assert_store_consistent(out)
    done = s.slide_counts("k9").frames
    assert 3 <= done < 80
    assert s.conn.execute("SELECT ended FROM runs").fetchone()[0] is None  # the run did not finish
    s.close()
    # the slide goes on from where it stopped: a frame it holds is not recorded again, a new one is
    s = run(AppOptions(model=device_model, source=str(source / "frame_000.png"), slide="k9", out=out, threads=1))
    assert s.frames_done == 0 and s.resumed == 1
    s = run(AppOptions(model=device_model, source=str(source / "frame_079.png"), slide="k9", out=out, threads=1))
    assert s.frames_done == 1
    st = Store(out, create=False)
    assert [r[0] for r in st.conn.execute("SELECT seq FROM frames ORDER BY seq")] == list(range(done + 1))
    st.close()


def test_sigterm_finishes_the_frame_and_closes_the_store(device_model, distinct_frames, tmp_path):
    source = distinct_frames(tmp_path / "frames", 80)
    out = tmp_path / "store"
    proc = start_app(device_model, source, out, "term")
    wait_for_frames(proc, out / "cytoedge.sqlite", 2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout and "Traceback" not in stderr
    s = assert_store_consistent(out)
    ended, summary = s.conn.execute("SELECT ended, summary FROM runs").fetchone()
    assert ended and json.loads(summary)["stopped_by"] == "SIGTERM"
    assert json.loads(summary)["frames_done"] == s.slide_counts("term").frames < 80
    s.close()
    wal = out / "cytoedge.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed on close


BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "tensorflow", "tf_keras", "keras", "onnx", "onnxruntime", "onnx2tf", "timm",
           "train", "convert", "benchmarks", "cytoedge.train", "cytoedge.convert", "cytoedge.benchmarks"}
def blocked(name):
    return name.split(".")[0] in BLOCKED or ".".join(name.split(".")[:2]) in BLOCKED
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"{name} is blocked: edge_app must not import it")
        return None
sys.meta_path.insert(0, Blocker())
from cytoedge.edge_app.cli import main
rc = main(sys.argv[1:])
print("heavy modules loaded:", sorted(m for m in sys.modules if blocked(m)))
sys.exit(rc)
"""


def test_runs_with_torch_tensorflow_and_onnx_imports_blocked(device_model, field_frames, tmp_path):
    out = tmp_path / "store"
    outputs = []
    for args in (["--model", str(device_model), "--source", str(field_frames[0].parent), "--slide", "light",
                  "--out", str(out), "--save-annotated"],
                 ["report", "--slide", "light", "--out", str(out)],
                 ["boards"],
                 ["classify", "--model", str(device_model), str(field_frames[0].parent), "--no-table"]):
        r = subprocess.run([sys.executable, "-c", BLOCKER, *args], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "heavy modules loaded: []" in r.stdout
        outputs.append(r.stdout)
    assert f"slide light: {len(field_frames)} frames" in outputs[0]
    assert "Screening aid, not a diagnosis" in outputs[1]
    assert f"classified {len(field_frames)} crops" in outputs[3]
    s = assert_store_consistent(out)
    assert s.slide_counts("light").frames == len(field_frames)
    s.close()


def test_bad_command_lines_are_one_line_errors(device_model, tmp_path, capsys):
    store = ["--out", str(tmp_path / "store")]
    cases = [
        (["--model", str(tmp_path / "nope"), "--source", str(tmp_path)], "no model card at"),
        (["--model", str(device_model), "--source", str(tmp_path / "none")], "no such file, folder or camera"),
        (["--model", str(device_model), "--source", str(tmp_path)], "no image files in folder"),
        (["--model", str(device_model), "--source", str(tmp_path), "--slide", "../x"], "bad slide ID"),
        (["--model", str(device_model), "--source", str(tmp_path), "--threads", "0"], "--threads must be >= 1"),
        (["--model", str(device_model), "--source", str(tmp_path), "--board", "pi9"], "unknown board 'pi9'"),
        (["--model", str(device_model), "--source", str(tmp_path), "--min-cell-area", "0.5"], "cell finder settings"),
    ]
    for args, message in cases:
        assert main(args + store) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()  # nothing was written for a bad command line
