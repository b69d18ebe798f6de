"""``edge-app store check`` and ``edge-app store recover``: a store file with damaged pages.

An SD card that fails or a power cut on a card that ignores flushes can leave pages of
``cytoedge.sqlite`` unreadable. :func:`check_store` runs SQLite's ``PRAGMA integrity_check``
(read only). :func:`recover_store` copies every readable row into a new file and puts it
in place of the damaged one, which is kept beside it (``cytoedge.damaged-<time>.sqlite``).

SQLite's own ``.recover`` needs the ``sqlite3`` command-line shell, which a Pi may not
have, and Python's ``sqlite3`` module lacks the ``sqlite_dbpage`` table it is built on;
``iterdump()`` stops at the first unreadable page of a table, and ``backup()`` copies the
damaged pages as they are. So rows are salvaged here table by table in rowid order, in
batches: where a batch meets a damaged page, the scan finds the next rowid it can read
again (exponential steps, then bisection) and goes on. Only indexes are rebuilt, never
read, so a damaged index loses nothing.

The new file holds whole frames only: a frame whose cells were not all readable is left
out with them (a rerun of the slide records it again, whole; the resume skips the frames
that survived), and so are rows whose parent row was lost (a run lost under its frames is
replaced by a placeholder run, so they survive). What was dropped and why is counted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import fsync_dir
from cytoedge.edge_app.errors import StoreError
from cytoedge.edge_app.store import DB_FILE, MAX_ROWID, Store

BATCH = 500
TABLES = ("slides", "runs", "frames", "cells", "reviews", "models", "model_events")  # parents before children


class StoreDamagedError(StoreError):
    """``edge-app store check`` found damage (exit status 3: a verdict, not a usage error)."""

    exit_code = 3


@dataclass
class CheckResult:
    db: Path
    problems: list[str]  # PRAGMA integrity_check lines; ["ok"] when sound

    @property
    def ok(self) -> bool:
        return self.problems == ["ok"]


@dataclass
class Salvage:
    rows: list[dict[str, Any]] = field(default_factory=list)
    damaged_regions: int = 0  # places where the scan met an unreadable page and skipped past it


@dataclass
class RecoverResult:
    damaged_copy: Path | None  # where the damaged file was kept (None: --to, the store left as it was)
    recovered: Path
    kept: dict[str, int] = field(default_factory=dict)  # rows per table in the new file
    dropped: dict[str, int] = field(default_factory=dict)  # readable rows left out, by reason
    damaged_regions: dict[str, int] = field(default_factory=dict)  # per table
    integrity: str = ""
    leftovers: dict[str, int] = field(default_factory=dict)  # crop files of left-out cells removed
    sound: bool = False  # the file passed integrity_check: nothing was recovered, nothing kept, nothing changed


def _connect(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise StoreError(f"no store at {db}: pass the folder edge-app wrote with --out")
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def check_store(folder: str | Path, max_problems: int = 20) -> CheckResult:
    """``PRAGMA integrity_check`` of the store's file (nothing is written)."""
    db = Path(folder) / DB_FILE
    try:
        conn = _connect(db)
        try:
            problems = [r[0] for r in conn.execute(f"PRAGMA integrity_check({int(max_problems)})")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    return CheckResult(db, problems)


def _rows_after(conn: sqlite3.Connection, table: str, pos: int, limit: int) -> Iterator[dict[str, Any]]:
    """Rows (as dicts) with rowid > ``pos``, in rowid order; an unreadable page raises while iterating."""
    cur = conn.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                       (pos, limit))
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row))


def _readable_after(conn: sqlite3.Connection, table: str, pos: int) -> bool:
    try:
        list(_rows_after(conn, table, pos, 1))
        return True
    except sqlite3.DatabaseError:
        return False


def _past_damage(conn: sqlite3.Connection, table: str, pos: int) -> int | None:
    """The smallest position after ``pos`` from which the table reads again (None: nothing readable beyond)."""
    step = 1
    while pos + step < MAX_ROWID:
        if _readable_after(conn, table, pos + step):
            lo, hi = pos, pos + step  # unreadable after lo, readable after hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if _readable_after(conn, table, mid) else (mid, hi)
            return hi
        step *= 2
    return None


def salvage_table(conn: sqlite3.Connection, table: str) -> Salvage:
    """Every row of ``table`` that can be read, in rowid order, skipping past damaged pages."""
    out, pos = Salvage(), 0
    while True:
        got = 0
        try:
            for row in _rows_after(conn, table, pos, BATCH):
                out.rows.append(row)
                pos, got = int(row["_rowid"]), got + 1
        except sqlite3.DatabaseError:
            out.damaged_regions += 1
            nxt = _past_damage(conn, table, pos)
            if nxt is None:
                return out
            pos = nxt
            continue
        if got < BATCH:
            return out


def _consistent(tables: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Keep whole frames and rows whose parents survived; placeholder runs for frames whose run row was lost."""
    dropped: dict[str, int] = {}

    def drop(reason: str, n: int) -> None:
        if n:
            dropped[reason] = dropped.get(reason, 0) + n

    slides = {r["id"]: r for r in tables["slides"]}
    runs = [r for r in tables["runs"] if r["slide_id"] in slides]
    drop("runs of a lost slide", len(tables["runs"]) - len(runs))
    frames = [f for f in tables["frames"] if f["slide_id"] in slides]
    drop("frames of a lost slide", len(tables["frames"]) - len(frames))
    cells_by_frame: dict[int, list[dict[str, Any]]] = {}
    for c in tables["cells"]:
        cells_by_frame.setdefault(c["frame_id"], []).append(c)
    whole = [f for f in frames if len(cells_by_frame.get(f["id"], [])) == f["n_cells"]]
    drop("frames with unreadable cells (a rerun records them again)", len(frames) - len(whole))
    keep_frames = {f["id"] for f in whole}
    cells = [c for c in tables["cells"] if c["frame_id"] in keep_frames]
    drop("cells of a frame left out", len(tables["cells"]) - len(cells))
    have_runs = {r["id"] for r in runs}
    for run_id in sorted({f["run_id"] for f in whole} - have_runs):
        slide = next(f["slide_id"] for f in whole if f["run_id"] == run_id)
        runs.append({"id": run_id, "slide_id": slide, "started": "", "ended": None, "source": "(unreadable)",
                     "model": "(unreadable)", "model_sha256": "", "format": "", "board": "", "threads": 0,
                     "settings": "{}", "summary": None})
        drop("placeholder runs for frames whose run row was unreadable", 1)
    keep_cells = {c["id"] for c in cells}
    reviews = [r for r in tables["reviews"] if r["cell_id"] in keep_cells]
    drop("reviews of a cell left out", len(tables["reviews"]) - len(reviews))
    models = {r["card_sha256"]: r for r in tables["models"]}  # the device's model history (edge_app.models)
    events = [e for e in tables["model_events"] if e["card_sha256"] in models]
    drop("model events of an unreadable model", len(tables["model_events"]) - len(events))
    return {"slides": list(slides.values()), "runs": sorted(runs, key=lambda r: r["id"]), "frames": whole,
            "cells": cells, "reviews": reviews, "models": list(models.values()), "model_events": events}, dropped


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert the rows (inside the caller's transaction) in batches; a batch that fails (a row whose values
    were garbled past the schema's constraints) is undone and inserted row by row, skipping the bad rows."""
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    n = 0
    for start in range(0, len(rows), BATCH):
        values = [[row.get(c) for c in cols] for row in rows[start:start + BATCH]]
        conn.execute("SAVEPOINT batch")
        try:
            conn.executemany(sql, values)
            n += len(values)
        except sqlite3.DatabaseError:
            conn.execute("ROLLBACK TO batch")
            for v in values:
                try:
                    conn.execute(sql, v)
                    n += 1
                except sqlite3.DatabaseError:
                    continue
        conn.execute("RELEASE batch")
    return n


def recover_store(folder: str | Path, to: str | Path | None = None) -> RecoverResult:
    """Copy every readable row of the store's file into a new one; in place (damaged file kept) unless ``to``.

    In place, a file that passes ``PRAGMA integrity_check`` is left as it is (``sound``): there is no damaged
    file to keep."""
    from cytoedge.edge_app.leftovers import WriterLock, remove_leftovers

    folder = Path(folder)
    db = folder / DB_FILE
    lock = WriterLock(folder) if to is None else None
    if lock is not None and not lock.try_exclusive():
        lock.release()
        raise StoreError(f"an edge-app is writing {folder}: stop it before recovering the store")
    try:
        if to is None and check_store(folder).ok:
            return RecoverResult(None, db, integrity="ok", sound=True)
        conn = _connect(db)
        try:
            present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"the schema of {db} is unreadable ({exc}): nothing can be recovered from it; "
                             "keep the file for a specialist and start a new store") from None
        salvaged = {t: salvage_table(conn, t) if t in present else Salvage() for t in TABLES}
        conn.close()
        tables, dropped = _consistent({t: s.rows for t, s in salvaged.items()})
        work = Path(tempfile.mkdtemp(prefix=".recover-", dir=folder))
        new = Store(work)
        try:
            with new.transaction():
                kept = {t: _insert(new.conn, t, tables[t]) for t in TABLES}
            integrity = new.integrity_check()
        finally:
            new.close()
        result = RecoverResult(None, work / DB_FILE, kept, dropped,
                               {t: s.damaged_regions for t, s in salvaged.items() if s.damaged_regions}, integrity)
        try:
            _install(result, folder, db, Path(to) if to is not None else None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if to is None:  # crops of the rows left out are named by no cell now
            with Store(folder, create=False) as store:
                result.leftovers = remove_leftovers(store)
        return result
    finally:
        if lock is not None:
            lock.release()


def _install(result: RecoverResult, folder: Path, db: Path, to: Path | None) -> None:
    if to is not None:
        if to.exists():
            raise StoreError(f"--to {to} exists: choose a new file name")
        os.replace(result.recovered, to)
        result.recovered = to
        return
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = folder / f"cytoedge.damaged-{stamp}.sqlite"
    for suffix in ("", "-wal", "-shm"):  # the WAL may hold committed frames: it stays with its file
        if Path(f"{db}{suffix}").exists():
            os.replace(f"{db}{suffix}", f"{kept}{suffix}")
    os.replace(result.recovered, db)
    fsync_dir(folder)
    result.damaged_copy, result.recovered = kept, db

