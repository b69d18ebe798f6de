"""Review records (own rows, validated), the queue order, the v1 -> v2 store upgrade, and the ImageFolder export."""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter

import pytest

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.store import DB_FILE, SCHEMA, SCHEMA_VERSION, Store
from cytoedge.edge_app.web.reviews import (MANIFEST, MAX_NOTE, MAX_REVIEWER, NOT_A_CELL, ReviewError, add_review,
                                  export_imagefolder, latest_reviews, review_queue, reviews)


@pytest.fixture
def store(store_dir):
    with Store(store_dir, create=False) as s:
        yield s


def _cell_row(store, cell_id):
    return tuple(store.conn.execute("SELECT * FROM cells WHERE id = ?", (cell_id,)).fetchone())


def test_a_review_is_its_own_record_and_the_cell_stays_as_the_model_wrote_it(store):
    cell = store.cells_to_review("demo")[0]
    before = _cell_row(store, cell.id)
    r = add_review(store, cell.id, "dyskeratotic", "  Ana Silva ", "nucleus looks\nenlarged")
    assert (r.cell_id, r.slide_id, r.reviewer, r.old_label, r.old_group, r.new_label) == (
        cell.id, "demo", "Ana Silva", cell.class_name, cell.group, "dyskeratotic")
    assert r.note == "nucleus looks\nenlarged" and r.reviewed.endswith("+00:00")
    assert r.confirmed == (cell.class_name == "dyskeratotic")
    assert _cell_row(store, cell.id) == before
    again = add_review(store, cell.id, NOT_A_CELL, "Ben")
    assert [x.id for x in reviews(store, cell_id=cell.id)] == [again.id, r.id]  # newest first, both kept
    assert latest_reviews(store)[cell.id].new_label == NOT_A_CELL


@pytest.mark.parametrize("label, reviewer, note, match", [
    ("carcinoma", "Ana", "", "unknown label"),
    ("", "Ana", "", "unknown label"),
    ("dyskeratotic", "", "", "reviewer name is empty"),
    ("dyskeratotic", "   ", "", "reviewer name is empty"),
    ("dyskeratotic", "x" * (MAX_REVIEWER + 1), "", "at most 64"),
    ("dyskeratotic", "Ana\x1b[31m", "", "control characters"),
    ("dyskeratotic", "Ana\nBen", "", "control characters"),
    ("dyskeratotic", "Ana", "n" * (MAX_NOTE + 1), "at most 500"),
    ("dyskeratotic", "Ana", "bell\x07", "control characters"),
    ("dyskeratotic", 42, "", "must be text"),
])
def test_review_input_is_validated(store, label, reviewer, note, match):
    cell = store.cells_to_review("demo")[0]
    with pytest.raises(ReviewError, match=match):
        add_review(store, cell.id, label, reviewer, note)
    assert reviews(store) == []


def test_limits_are_inclusive_and_unknown_cells_refused(store):
    cell = store.cells_to_review("demo")[0]
    r = add_review(store, cell.id, "parabasal", "x" * MAX_REVIEWER, "n" * MAX_NOTE)
    assert len(r.reviewer) == MAX_REVIEWER and len(r.note) == MAX_NOTE
    with pytest.raises(ReviewError, match="no cell 999999"):
        add_review(store, 999999, "parabasal", "Ana")


def test_queue_is_unknown_first_then_largest_doubt_and_hides_reviewed(store):
    items, total = review_queue(store, "demo")
    assert total == len(items) == 9  # 3 frames x (2 abnormal + 1 unknown), all with crops
    assert all(i.cell.group in ("abnormal", "unknown") and i.cell.crop_path for i in items)
    unknown = [i.cell.unknown for i in items]
    assert unknown == sorted(unknown, reverse=True)  # unknown cells first
    doubts = [i.doubt for i in items if not i.cell.unknown]
    assert doubts == sorted(doubts, reverse=True) and doubts[0] == pytest.approx(1 - 0.6)
    first = items[0].cell
    add_review(store, first.id, "koilocytotic", "Ana")
    items2, total2 = review_queue(store, "demo")
    assert total2 == 8 and first.id not in [i.cell.id for i in items2]
    all_items, _ = review_queue(store, "demo", include_reviewed=True)
    assert next(i for i in all_items if i.cell.id == first.id).latest.reviewer == "Ana"
    page2, _ = review_queue(store, "demo", limit=5, offset=5)
    assert [i.cell.id for i in page2] == [i.cell.id for i in items2[5:10]]


def test_v1_store_is_upgraded_in_place(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    v1 = SCHEMA.split("-- version 2")[0]
    with sqlite3.connect(folder / DB_FILE) as conn:
        conn.executescript(v1 + "INSERT INTO slides VALUES ('s1', '2026-01-01T00:00:00+00:00', '[\"a\"]', '{}');"
                           "INSERT INTO schema_version VALUES (1, 'then'); PRAGMA user_version = 1;")
    with Store(folder, create=False) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        assert [r[0] for r in s.conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 6]
        cols = [r[1] for r in s.conn.execute("PRAGMA table_info(cells)")]
        assert "p_abnormal" in cols and "slide_x" in cols  # version 4: the gallery; 5: slide coordinates
        assert "frame_key" in [r[1] for r in s.conn.execute("PRAGMA table_info(frames)")]  # version 3: resume
        assert s.has_slide("s1") and reviews(s) == []


def _review_some(store):
    items, _ = review_queue(store, "demo")
    add_review(store, items[0].cell.id, "koilocytotic", "Ana")  # an unknown cell, now named
    add_review(store, items[1].cell.id, "parabasal", "Ana")
    add_review(store, items[1].cell.id, "dyskeratotic", "Ben")  # the later review wins
    add_review(store, items[2].cell.id, NOT_A_CELL, "Ana")
    add_review(store, items[3].cell.id, items[3].cell.class_name, "Ana", "confirmed")
    return items


def test_export_is_an_imagefolder_tree_that_the_trainer_reads(store, tmp_path):
    from cytoedge.train.data.sipakmed import scan_dataset

    items = _review_some(store)
    res = export_imagefolder(store, tmp_path / "reviewed")
    assert res.files == 3 and res.not_a_cell == 1 and res.missing_crop == 0
    assert res.per_class == Counter(["koilocytotic", "dyskeratotic", items[3].cell.class_name])
    index = scan_dataset(tmp_path / "reviewed")
    assert index.layout == "imagefolder" and len(index.samples) == 3
    assert index.counts() == dict(res.per_class)
    assert (tmp_path / "reviewed" / "dyskeratotic").is_dir() and not (tmp_path / "reviewed" / "parabasal").exists()
    rows = list(csv.DictReader((tmp_path / "reviewed" / MANIFEST).open()))
    assert len(rows) == 4 and {r["reviewer"] for r in rows if r["cell"] == str(items[1].cell.id)} == {"Ben"}
    assert next(r for r in rows if r["label"] == NOT_A_CELL)["file"] == ""
    for r in rows:
        if r["file"]:
            assert (tmp_path / "reviewed" / r["file"]).read_bytes() == store.crop_file(int(r["cell"])).read_bytes()


def test_export_replaces_an_earlier_export_but_never_a_foreign_folder(store, tmp_path):
    _review_some(store)
    dest = tmp_path / "reviewed"
    export_imagefolder(store, dest)
    (dest / "koilocytotic" / "stale.png").write_bytes(b"old")
    export_imagefolder(store, dest)
    assert not (dest / "koilocytotic" / "stale.png").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ReviewError, match="not an earlier review export"):
        export_imagefolder(store, foreign)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_export_without_class_reviews_is_an_error(store, tmp_path):
    with pytest.raises(ReviewError, match="review crops in the web view"):
        export_imagefolder(store, tmp_path / "none")
    add_review(store, store.cells_to_review("demo")[0].id, NOT_A_CELL, "Ana")
    with pytest.raises(ReviewError, match="1 marked not_a_cell"):
        export_imagefolder(store, tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_export_reviews_command(store_dir, tmp_path, capsys):
    with Store(store_dir, create=False) as s:
        _review_some(s)
    assert main(["export-reviews", "--store", str(store_dir), "--to", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "exported 3 reviewed crops" in out and f"edge-train --data {tmp_path / 'out'}" in out
    assert main(["export-reviews", "--out", str(tmp_path / "nothing"), "--to", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-app: error: no store at") and err.count("\n") == 1


def test_a_slides_queue_leads_with_the_cells_most_likely_abnormal(tmp_path):
    """Cells with a calibrated abnormal probability (store schema 4): the kept cells highest first, then the
    doubtful order (unknown first); a cell never twice."""
    import numpy as np

    from cytoedge.edge_app.store import CellResult

    s = Store(tmp_path / "q")
    s.open_slide("s", ["parabasal", "koilocytotic"], {"parabasal": "normal", "koilocytotic": "abnormal"})
    run = s.start_run("s", source="x", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b", threads=1,
                      settings={})
    cells = [CellResult((0, 0, 5, 5), "koilocytotic", "abnormal", 0.55, 1.0, False, 0.55),
             CellResult((0, 0, 5, 5), "koilocytotic", "abnormal", 0.99, 1.0, False, 0.99),
             CellResult((0, 0, 5, 5), "koilocytotic", "unknown", 0.9, 9.0, True, 0.9),
             CellResult((0, 0, 5, 5), "parabasal", "normal", 0.6, 1.0, False, 0.4)]
    s.add_frame("s", run, name="f.png", size=(64, 64), cells=cells, crops=[np.zeros((8, 8, 3), np.uint8)] * 4)
    items, total = review_queue(s, "s")
    assert [round(i.cell.p_abnormal, 2) for i in items] == [0.99, 0.55, 0.9]  # suspicious, then unknown
    assert total == 3 and len({i.cell.id for i in items}) == 3
    s.close()
