"""Leftovers of killed runs: orphan crops and .tmp files are removed at the next start (and counted), the
file is checked first, and nothing is touched while another edge-app writes the store."""

from __future__ import annotations

import json

import numpy as np

from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.leftovers import WriterLock, after_interrupted_runs
from cytoedge.edge_app.store import CellResult, Store

CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
GROUPS = {c: "abnormal" for c in CLASSES}


def killed_run(folder):
    """A store whose run committed one frame (two crops) and was then killed, leaving an orphan and .tmp files."""
    s = Store(folder, crop_policy="all")
    s.open_slide("S", CLASSES, GROUPS)
    run_id = s.start_run("S", source="f", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b", threads=1,
                         settings={})
    cells = [CellResult((0, 0, 9, 9), "koilocytotic", "abnormal", 0.9, 1.0, False)] * 2
    s.add_frame("S", run_id, name="a.png", size=(64, 64), cells=cells, crops=[np.zeros((8, 8, 3), np.uint8)] * 2)
    crops = folder / "crops" / "S"
    (crops / "000001_000_koilocytotic.png").write_bytes(b"written before a commit that never came")
    (crops / ".000001_001_koilocytotic.png.x7f3k2.tmp").write_bytes(b"half")
    (folder / "annotated" / "S").mkdir(parents=True)
    (folder / "annotated" / "S" / ".000001.jpg.a1b2c3.tmp").write_bytes(b"half")
    s.close(checkpoint=False)
    return run_id


def test_leftovers_of_a_killed_run_are_removed_and_counted(tmp_path):
    run_id = killed_run(tmp_path)
    store = Store(tmp_path, create=False)
    lock = WriterLock(tmp_path)
    done = after_interrupted_runs(store, lock)
    assert done == {"interrupted_runs": 1, "orphan_crops": 1, "temporary_files": 2}
    named = store.referenced_crops()
    assert len(named) == 2 and all((tmp_path / p).is_file() for p in named)
    assert sorted(p.name for p in (tmp_path / "crops" / "S").iterdir()) == sorted(p.rsplit("/", 1)[1] for p in named)
    assert not list(tmp_path.rglob("*.tmp"))
    ended, summary = store.conn.execute("SELECT ended, summary FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert ended is None and "interrupted" in json.loads(summary)["stopped_by"]  # still "did not finish cleanly"
    assert after_interrupted_runs(store, lock) == {}  # once is enough
    lock.release()
    store.close()


def test_nothing_is_swept_while_another_edge_app_writes(tmp_path):
    killed_run(tmp_path)
    other = WriterLock(tmp_path)
    other.share()  # a capture run in progress on this store
    store = Store(tmp_path, create=False)
    mine = WriterLock(tmp_path)
    assert after_interrupted_runs(store, mine) == {}
    assert len(list((tmp_path / "crops" / "S").glob("*"))) == 4  # its crops in flight are left alone
    mine.release()
    other.release()
    store.close()


def test_the_app_sweeps_at_start_and_records_it(device_model, field_frames, tmp_path, caplog):
    killed_run(tmp_path)
    caplog.set_level("INFO", logger="cytoedge.edge_app")
    s = run(AppOptions(model=device_model, source=str(field_frames[0]), slide="S2", out=tmp_path, threads=1))
    assert s.leftovers == {"interrupted_runs": 1, "orphan_crops": 1, "temporary_files": 2}
    assert any("1 orphan crop(s) and 2 temporary file(s) removed" in r.getMessage() for r in caplog.records)
    with Store(tmp_path, create=False) as st:
        summary = json.loads(st.conn.execute("SELECT summary FROM runs ORDER BY id DESC").fetchone()[0])
    assert summary["leftovers"] == s.leftovers
