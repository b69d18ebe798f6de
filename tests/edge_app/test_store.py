"""The SQLite store: schema, one transaction per frame, crop policy, full disk, read API."""

from __future__ import annotations

import errno
import sqlite3

import numpy as np
import pytest

import cytoedge.edge_app.store as store_mod
from cytoedge.edge_app.errors import CytoEdgeError, StoreError
from cytoedge.edge_app.store import SCHEMA_VERSION, CellResult, Store

CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
GROUPS = {"superficial_intermediate": "normal", "parabasal": "normal", "metaplastic": "benign",
          "koilocytotic": "abnormal", "dyskeratotic": "abnormal"}


def cells_of_a_frame() -> list[CellResult]:
    return [
        CellResult((10, 20, 30, 40), "parabasal", "normal", 0.95, 1.2, False),
        CellResult((50, 60, 30, 40), "koilocytotic", "abnormal", 0.81, 2.0, False),
        CellResult((90, 20, 30, 40), "metaplastic", "unknown", 0.40, 9.5, True),
        CellResult((130, 20, 30, 40), "dyskeratotic", "abnormal", 0.66, None, False),
    ]


def crops(n: int) -> list[np.ndarray]:
    return [np.full((24, 24, 3), 40 * i, np.uint8) for i in range(n)]


def open_run(folder, **kw) -> tuple[Store, int]:
    s = Store(folder, **kw)
    s.open_slide("S-1", CLASSES, GROUPS)
    run = s.start_run("S-1", source="fields", model="shufflenet_v2_x1_0", model_sha256="ab" * 32,
                      fmt="tflite-int8", board="x86-workstation", threads=2, settings={})
    return s, run


def test_schema_version_wal_and_reopen(tmp_path):
    s, _ = open_run(tmp_path)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [tuple(r) for r in s.conn.execute("SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]
    s.close()
    again = Store(tmp_path, create=False)
    assert again.has_slide("S-1") and again.integrity_check() == "ok"
    again.close()


def test_newer_schema_and_missing_store_are_refused(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "none", create=False)
    s = Store(tmp_path)
    s.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    s.close()
    with pytest.raises(StoreError, match="newer than this CytoEdge"):
        Store(tmp_path)


def test_frame_cells_and_review_crops_are_stored(tmp_path):
    s, run = open_run(tmp_path)
    seq = s.add_frame("S-1", run, name="f1.png", size=(1280, 960), cells=cells_of_a_frame(), crops=crops(4),
                      timings={"find": 12.0, "classify": 30.0})
    assert seq == 0 and s.next_seq("S-1") == 1
    counts = s.slide_counts("S-1")
    assert counts.frames == 1 and counts.cells == 4
    assert counts.per_group == {"normal": 1, "benign": 0, "abnormal": 2, "unknown": 1}
    assert counts.per_class["metaplastic"] == 0  # the unknown cell is not counted under its top class
    assert counts.abnormal_fraction == 0.5
    review = s.cells_to_review("S-1")
    assert [r.group for r in review] == ["unknown", "abnormal", "abnormal"]  # unknown first, then least confident
    assert [r.confidence for r in review[1:]] == [0.66, 0.81]
    saved = sorted(p.name for p in (tmp_path / "crops" / "S-1").iterdir())
    assert saved == ["000000_001_koilocytotic.png", "000000_002_metaplastic.png", "000000_003_dyskeratotic.png"]
    assert s.crop_file(review[0].id) == (tmp_path / "crops/S-1/000000_002_metaplastic.png").resolve()
    normal_cell = next(r for r in s.conn.execute("SELECT id, crop_path FROM cells WHERE grp = 'normal'"))
    assert normal_cell["crop_path"] is None and s.crop_file(normal_cell["id"]) is None


@pytest.mark.parametrize("policy, saved", [("none", 0), ("abnormal", 2), ("review", 3), ("all", 4)])
def test_crop_policy(tmp_path, policy, saved):
    s, run = open_run(tmp_path, crop_policy=policy)
    s.add_frame("S-1", run, name="f", size=(100, 100), cells=cells_of_a_frame(), crops=crops(4))
    folder = tmp_path / "crops" / "S-1"
    files = len(list(folder.iterdir())) if folder.exists() else 0
    assert files == saved
    assert s.conn.execute("SELECT COUNT(crop_path) FROM cells").fetchone()[0] == saved


def test_crop_path_outside_the_store_is_never_served(tmp_path):
    s, run = open_run(tmp_path)
    s.add_frame("S-1", run, name="f", size=(100, 100), cells=cells_of_a_frame(), crops=crops(4))
    outside = tmp_path.parent / "secret.png"
    outside.write_bytes(b"x")
    s.conn.execute("UPDATE cells SET crop_path = ? WHERE idx = 1", (f"crops/../../{outside.name}",))
    cell_id = s.conn.execute("SELECT id FROM cells WHERE idx = 1").fetchone()[0]
    assert s.crop_file(cell_id) is None


def test_full_disk_stops_crop_saving_but_not_the_store(tmp_path, monkeypatch, caplog):
    s, run = open_run(tmp_path)

    def no_space(path, data, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "atomic_write_bytes", no_space)
    s.add_frame("S-1", run, name="f1", size=(100, 100), cells=cells_of_a_frame(), crops=crops(4))
    s.add_frame("S-1", run, name="f2", size=(100, 100), cells=cells_of_a_frame(), crops=crops(4))
    assert not s.crops_enabled and "crop saving stopped" in s.crop_warning
    assert sum("disk full" in r.message for r in caplog.records) == 1  # warned once
    assert s.slide_counts("S-1").cells == 8
    assert s.conn.execute("SELECT COUNT(crop_path) FROM cells").fetchone()[0] == 0


def test_low_free_space_limit_counts_as_full(tmp_path):
    s, run = open_run(tmp_path, min_free_mb=1e12)
    s.add_frame("S-1", run, name="f1", size=(100, 100), cells=cells_of_a_frame(), crops=crops(4))
    assert "kept free" in s.crop_warning and s.slide_counts("S-1").cells == 4


def test_a_frame_is_all_or_nothing(tmp_path):
    s, run = open_run(tmp_path)
    bad = cells_of_a_frame() + [CellResult(("x", 0, 1, 1), "parabasal", "normal", 0.9, 1.0, False)]
    with pytest.raises(ValueError):
        s.add_frame("S-1", run, name="f1", size=(100, 100), cells=bad)
    assert s.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0
    assert s.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 0
    s.add_frame("S-1", run, name="f2", size=(100, 100), cells=cells_of_a_frame())
    assert s.slide_counts("S-1").frames == 1


def test_runs_are_recorded_and_a_slide_continues(tmp_path):
    s, run = open_run(tmp_path)
    s.add_frame("S-1", run, name="f1", size=(100, 100), cells=cells_of_a_frame())
    s.end_run(run, {"frames_done": 1})
    s.close()
    s2, run2 = open_run(tmp_path)
    assert s2.add_frame("S-1", run2, name="f2", size=(100, 100), cells=[]) == 1
    runs = s2.slide_counts("S-1").runs
    assert [r["summary"] for r in runs] == [{"frames_done": 1}, None]
    assert [c.slide_id for c in s2.list_slides()] == ["S-1"]


def test_slide_ids_and_classes_are_checked(tmp_path):
    s = Store(tmp_path)
    for bad in ("../up", "", "a b", ".hidden", "x" * 65):
        with pytest.raises(CytoEdgeError, match="bad slide ID"):
            s.open_slide(bad, CLASSES, GROUPS)
    s.open_slide("S-2", CLASSES, GROUPS)
    with pytest.raises(StoreError, match="recorded with classes"):
        s.open_slide("S-2", ["a", "b"], {})
    with pytest.raises(StoreError, match="no slide 'nope'.*S-2"):
        s.slide_counts("nope")


def test_bad_policy_and_unwritable_folder(tmp_path):
    with pytest.raises(CytoEdgeError, match="unknown crop policy"):
        Store(tmp_path, crop_policy="some")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="choose a writable --out"):
        Store(tmp_path / "file" / "store")


def test_store_file_is_plain_sqlite(tmp_path):
    s, run = open_run(tmp_path)
    s.add_frame("S-1", run, name="f1", size=(100, 100), cells=cells_of_a_frame())
    other = sqlite3.connect(tmp_path / "cytoedge.sqlite")  # another reader sees the committed frame at once
    assert other.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 4
    other.close()


def test_a_store_migrated_by_another_connection_meanwhile_opens(tmp_path, monkeypatch):
    """The web view may open the store while edge-app is creating it: both read schema version 0, one
    migrates, the other's migration then fails (the column exists). The loser must see that the store is
    now current and open it, not fail the run (seen as a live page that never counted a frame)."""
    Store(tmp_path).close()  # the other connection, done migrating
    stale = [0]  # our connection read the version just before that migration committed
    real = Store._schema_version
    monkeypatch.setattr(Store, "_schema_version", lambda self: stale.pop() if stale else real(self))
    with Store(tmp_path, create=False) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1  # rolled back, not doubled


def test_a_version_3_store_gains_the_slide_positions_and_keeps_its_frames(tmp_path):
    from cytoedge.edge_app.store import DB_FILE, SCHEMA, SCHEMA_V3, FieldPlace

    with sqlite3.connect(tmp_path / DB_FILE) as conn:  # a store written before the manual stage
        conn.executescript(SCHEMA + SCHEMA_V3 + "INSERT INTO schema_version VALUES (3, 'then'); PRAGMA user_version = 3;"
                           "INSERT INTO slides VALUES ('S-1', 'then', '[\"a\"]', '{}');")
    with Store(tmp_path, create=False) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        assert {"stage_x", "stage_y", "focus"} <= {r[1] for r in s.conn.execute("PRAGMA table_info(frames)")}
        run = s.start_run("S-1", source="x", model="m", model_sha256="0", fmt="f", board="b", threads=1, settings={})
        s.add_frame("S-1", run, name="fixed", size=(100, 100), cells=cells_of_a_frame())
        cells = [CellResult(c.box, c.class_name, c.group, c.confidence, c.distance, c.unknown, slide_xy=(500.0 + i, 40.0))
                 for i, c in enumerate(cells_of_a_frame())]
        s.add_frame("S-1", run, name="field", size=(100, 100), cells=cells, place=FieldPlace(480.0, 20.0, 11.5))
        assert s.slide_fields("S-1") == [(480.0, 20.0, 100, 100, 11.5)]  # the fixed-stage frame has no place
        assert [b[:2] for b in s.slide_cell_boxes("S-1")] == [(500.0 + i, 40.0) for i in range(len(cells))]
