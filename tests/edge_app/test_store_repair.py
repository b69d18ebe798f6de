"""A store file with damaged pages: one-line errors (exit 2) from run and report, `edge-app store check`
and `edge-app store recover` (every readable row into a new file, whole frames only, damaged file kept)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.store import DB_FILE, CellResult, Store
from cytoedge.edge_app.store_repair import check_store, recover_store, salvage_table

CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
GROUPS = {"superficial_intermediate": "normal", "parabasal": "normal", "metaplastic": "benign",
          "koilocytotic": "abnormal", "dyskeratotic": "abnormal"}


def fill(folder: Path, slides: int = 2, frames: int = 30, cells: int = 12, finish: bool = True) -> dict[str, int]:
    """A store of ``slides`` x ``frames`` x ``cells``; ``finish=False``: the last run never ends (a power cut)."""
    with Store(folder, crop_policy="none") as s:
        s.conn.execute("PRAGMA synchronous=OFF")  # a test fixture: durability is not what is tested here
        for k in range(slides):
            slide = f"S{k}"
            s.open_slide(slide, CLASSES, GROUPS)
            run = s.start_run(slide, source="f", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b",
                              threads=1, settings={})
            for i in range(frames):
                cs = [CellResult((j, i, 20, 20), CLASSES[j % 5], GROUPS[CLASSES[j % 5]], 0.5 + j / 100, 1.0, False)
                      for j in range(cells)]
                s.add_frame(slide, run, name=f"f{i:03d}.png", size=(640, 480), cells=cs, key=f"sha256:{k}-{i}")
            if finish or k < slides - 1:
                s.end_run(run, {})
        return {"slides": slides, "frames": slides * frames, "cells": slides * frames * cells}


def damage(db: Path, pages: list[int]) -> None:
    """Overwrite whole pages with garbage (an SD card that lost them)."""
    size = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    rng = np.random.default_rng(0)
    with open(db, "r+b") as fh:
        for p in pages:
            fh.seek((p - 1) * size)
            fh.write(rng.integers(0, 256, size, np.uint8).tobytes())


def cells_pages(db: Path, n: int, seed: int = 0) -> list[int]:
    """``n`` leaf pages of the cells table: b-tree table leaves (first byte 0x0D) holding bare class names (the
    cells' rows; slides rows hold them quoted in JSON, frames rows file names, index pages no class names; any
    other '"' byte may be part of a binary REAL or a record header),
    not the table's last page."""
    conn = sqlite3.connect(db)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = db.read_bytes()
    leaves = [i + 1 for i in range(1, len(data) // size)
              if data[i * size] == 0x0D and b"koilocytotic" in data[i * size:(i + 1) * size]
              and b".png" not in data[i * size:(i + 1) * size] and b'"koilocytotic"' not in data[i * size:(i + 1) * size]]
    return random.Random(seed).sample(leaves[:-1], n)


@pytest.fixture
def damaged(tmp_path) -> tuple[Path, dict[str, int]]:
    folder = tmp_path / "store"
    made = fill(folder, finish=False)  # the power cut that damaged the card also interrupted the last run
    damage(folder / DB_FILE, cells_pages(folder / DB_FILE, 3))
    return folder, made


def test_report_and_run_on_a_damaged_store_are_one_line_exit_2(damaged, device_model, field_frames, capsys):
    folder, _ = damaged
    assert main(["report", "--slide", "S0", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "edge-app store recover" in err, err
    assert main(["--model", str(device_model), "--source", str(field_frames[0]), "--slide", "S0", "--out",
                 str(folder), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edge-app: error: store") and "damaged" in err, err
    assert "Traceback" not in err


def test_store_check_tells_sound_from_damaged(tmp_path, damaged, capsys):
    sound = tmp_path / "sound"
    fill(sound, slides=1, frames=3)
    assert main(["store", "check", "--out", str(sound)]) == 0
    assert "ok (PRAGMA integrity_check)" in capsys.readouterr().out
    folder, _ = damaged
    assert not check_store(folder).ok
    assert main(["store", "check", "--out", str(folder)]) == 3
    out, err = capsys.readouterr()
    assert out.strip() and err.count("\n") == 1 and "store recover" in err


def test_recover_keeps_every_readable_whole_frame_and_the_damaged_file(damaged, capsys):
    folder, made = damaged
    damaged_bytes = (folder / DB_FILE).read_bytes()
    assert main(["store", "recover", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "integrity: ok" in out and "the damaged file is kept as" in out
    kept = sorted(folder.glob("cytoedge.damaged-*.sqlite"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes  # the damaged file is kept as it was
    assert check_store(folder).ok
    with Store(folder, create=False) as s:
        frames = s.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        cells = s.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        whole = s.conn.execute("SELECT COUNT(*) FROM frames f WHERE n_cells = "
                               "(SELECT COUNT(*) FROM cells c WHERE c.frame_id = f.id)").fetchone()[0]
        assert whole == frames  # only whole frames: a rerun records the others again
        assert s.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        keys = s.frame_keys("S0")
        report_ok = s.slide_counts("S0").cells
    assert 0.5 * made["cells"] < cells < made["cells"] and 0.5 * made["frames"] < frames <= made["frames"]
    assert report_ok > 0 and all(k.startswith("sha256:0-") for k in keys)
    assert main(["report", "--slide", "S0", "--out", str(folder)]) == 0
    print(f"survived: {frames}/{made['frames']} frames, {cells}/{made['cells']} cells")


def test_recover_on_a_sound_store_says_so_and_keeps_no_damaged_copy(tmp_path, capsys):
    folder = tmp_path / "store"
    fill(folder, slides=1, frames=5)
    before = (folder / DB_FILE).read_bytes()
    assert main(["store", "recover", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "ok (PRAGMA integrity_check): nothing to recover" in out, out
    assert "damaged" not in out and list(folder.glob("cytoedge.damaged-*")) == []
    assert (folder / DB_FILE).read_bytes() == before  # left as it is


def test_salvage_reads_past_a_damaged_page(tmp_path):
    folder = tmp_path / "store"
    made = fill(folder, slides=1, frames=60)
    db = folder / DB_FILE
    damage(db, cells_pages(db, 1, seed=3))
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError):  # what iterdump() and a plain SELECT meet
        conn.execute("SELECT COUNT(*), SUM(length(class_name)) FROM cells").fetchall()
    got = salvage_table(conn, "cells")
    conn.close()
    ids = [r["id"] for r in got.rows]
    assert got.damaged_regions >= 1 and ids == sorted(ids)
    assert made["cells"] - 200 < len(ids) < made["cells"]  # one 4 KB page holds a few dozen cells
    assert max(ids) > made["cells"] - 20  # the scan went on past the damage to the end of the table


def test_recover_refuses_while_an_edge_app_writes_and_an_unreadable_schema(tmp_path):
    from cytoedge.edge_app.errors import StoreError
    from cytoedge.edge_app.leftovers import WriterLock

    folder = tmp_path / "store"
    fill(folder, slides=1, frames=2)
    lock = WriterLock(folder)
    lock.share()  # a capture run on this store
    with pytest.raises(StoreError, match="an edge-app is writing"):
        recover_store(folder)
    lock.release()
    damage(folder / DB_FILE, [1])  # the header and the schema page
    with pytest.raises(StoreError):
        recover_store(folder)
    assert (folder / DB_FILE).is_file()  # nothing was moved


def test_recover_keeps_the_devices_model_history(tmp_path, capsys):
    """Every model the device ran (edge_app.models: the models and model_events tables) survives a recovery, so
    a rollback after it still knows the model before."""
    folder = tmp_path / "store"
    fill(folder, finish=False)
    with Store(folder, create=False) as s, s.transaction():
        for sha, parent in (("a" * 64, None), ("b" * 64, "a" * 64)):
            s.conn.execute("INSERT INTO models (card_sha256, architecture, folder, first_seen, parent_card_sha256, card) "
                           "VALUES (?, 'shufflenet_v2', ?, 'then', ?, '{}')", (sha, f"models/{sha[:16]}", parent))
        s.conn.executemany("INSERT INTO model_events (card_sha256, at, action) VALUES (?, 'then', ?)",
                           [("a" * 64, "install"), ("b" * 64, "install")])
    damage(folder / DB_FILE, cells_pages(folder / DB_FILE, 2))
    assert main(["store", "recover", "--out", str(folder)]) == 0
    with Store(folder, create=False) as s:
        models = s.conn.execute("SELECT card_sha256, parent_card_sha256 FROM models ORDER BY card_sha256").fetchall()
        events = s.conn.execute("SELECT card_sha256, action FROM model_events ORDER BY id").fetchall()
    assert [tuple(m) for m in models] == [("a" * 64, None), ("b" * 64, "a" * 64)]
    assert [tuple(e) for e in events] == [("a" * 64, "install"), ("b" * 64, "install")]
