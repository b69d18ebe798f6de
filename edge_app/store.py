"""The per-slide record: one SQLite file (WAL) plus crop images, in one store folder.

Layout of ``--out DIR`` (default ``cytoedge-data``)::

    cytoedge.sqlite          slides, runs, frames, cells, reviews (schema below, PRAGMA user_version)
    crops/<slide>/<frame>_<cell>_<class>.png   crops saved for review

Every frame is one transaction (its row and all its cells, or nothing), in WAL mode
with ``synchronous=FULL``: a kill -9 or a power cut at any moment leaves every
committed frame whole and the file readable. Crop files are written atomically
*before* the transaction that names them commits, so a committed cell never points
at a missing file. A full disk (or less free space than ``min_free_mb``) stops crop
saving with one warning; classification and the store go on.

The read API (:meth:`Store.list_slides`, :meth:`Store.slide_counts`,
:meth:`Store.cells_to_review`, :meth:`Store.crop_file`) is what the report and the
web view use; both open the file with their own :class:`Store`.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_bytes, fsync_dir
from cytoedge.edge_app.classes import ABNORMAL, GROUPS, UNKNOWN
from cytoedge.edge_app.errors import CytoEdgeError, StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6  # 1: slides, runs, frames, cells; 2: + reviews (the web view's review queue); 3: + frames.frame_key;
# 4: + cells.p_abnormal (the calibrated abnormal probability: the gallery's suspicion order);
# 5: + a field's slide position and focus (frames.stage_x/stage_y/focus), a cell's slide position (cells.slide_x/slide_y)
# 6: + models, model_events, runs.card_sha256 (the device keeps every model it ran: edge_app.models)
DB_FILE = "cytoedge.sqlite"
CROPS_DIR = "crops"
CROP_POLICIES = ("none", "abnormal", "review", "all")  # review = abnormal + unknown
MAX_ROWID = 2**63 - 1  # SQLite's largest INTEGER PRIMARY KEY
_SLIDE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slides (
    id TEXT PRIMARY KEY,            -- the --slide value
    created TEXT NOT NULL,          -- ISO 8601 UTC
    class_names TEXT NOT NULL,      -- JSON list, the model's order
    class_groups TEXT NOT NULL      -- JSON {class: group}
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    slide_id TEXT NOT NULL REFERENCES slides(id),
    started TEXT NOT NULL,
    ended TEXT,                     -- NULL while running or after a crash
    source TEXT NOT NULL,
    model TEXT NOT NULL,            -- architecture
    model_sha256 TEXT NOT NULL,     -- of the artifact that ran
    format TEXT NOT NULL,           -- tflite-int8 / tflite-fp32
    board TEXT NOT NULL,
    threads INTEGER NOT NULL,
    settings TEXT NOT NULL,         -- JSON: min_confidence, crop policy, finder limits
    summary TEXT                    -- JSON counters written at the end (frames read, skipped, ...)
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    slide_id TEXT NOT NULL REFERENCES slides(id),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,           -- 0, 1, 2 ... within the slide
    name TEXT NOT NULL,             -- file name or camera frame id
    captured TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    n_cells INTEGER NOT NULL,
    finder_ms REAL, classifier_ms REAL,
    UNIQUE (slide_id, seq)
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    frame_id INTEGER NOT NULL REFERENCES frames(id),
    slide_id TEXT NOT NULL,
    idx INTEGER NOT NULL,           -- position within the frame
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    class_name TEXT NOT NULL,       -- the model's top class (kept even when unknown)
    grp TEXT NOT NULL,              -- normal / benign / abnormal, or unknown when flagged
    confidence REAL NOT NULL,       -- calibrated probability of the top class (softmax of logits / card temperature)
    distance REAL,                  -- the open-set score (card schema 2; e.g. Mahalanobis distance to the nearest class)
    unknown INTEGER NOT NULL,       -- 1: rejected (open-set score over the card's threshold, or low confidence)
    crop_path TEXT                  -- relative to the store folder; NULL when not saved
);
CREATE INDEX IF NOT EXISTS cells_by_slide ON cells (slide_id, grp);
CREATE INDEX IF NOT EXISTS frames_by_slide ON frames (slide_id, seq);
-- version 2: a reviewer's verdict on a cell is its own record; the model's output in cells is never changed.
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    slide_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,         -- the name the reviewer typed
    reviewed TEXT NOT NULL,         -- ISO 8601 UTC
    old_label TEXT NOT NULL,        -- the model's top class
    old_group TEXT NOT NULL,        -- the group the model gave (unknown when it rejected the cell)
    new_label TEXT NOT NULL,        -- the reviewer's class (or not_a_cell); equal to old_label: confirmed
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_by_cell ON reviews (cell_id, id);
"""
# version 3: a frame's stable identity (edge_app.resume), so a rerun on the slide never records a frame twice.
# NULL for camera frames (a camera goes on) and for frames recorded before version 3.
SCHEMA_V3 = """
ALTER TABLE frames ADD COLUMN frame_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS frames_by_key ON frames (slide_id, frame_key) WHERE frame_key IS NOT NULL;
"""
# version 4: each cell's calibrated probability of the abnormal group (sum over its classes); NULL before version 4.
SCHEMA_V4 = """
ALTER TABLE cells ADD COLUMN p_abnormal REAL;
"""
# version 5: with a manual stage (edge_app.stage) a frame row is a settled field: its top-left corner in slide
# coordinates (full-resolution px of the run's first frame) and its focus score; each cell its box's top-left
# corner in the same coordinates. NULL for a fixed stage (files, video) and for rows recorded before version 5.
SCHEMA_V5 = """
ALTER TABLE frames ADD COLUMN stage_x REAL;
ALTER TABLE frames ADD COLUMN stage_y REAL;
ALTER TABLE frames ADD COLUMN focus REAL;
ALTER TABLE cells ADD COLUMN slide_x REAL;
ALTER TABLE cells ADD COLUMN slide_y REAL;
"""

# version 6: every model the device ran or was given, keyed by the SHA-256 of its model_card.json; which one is
# in use follows from the events (install pushes a model, rollback returns to the one before); a run names its card.
SCHEMA_V6 = """
CREATE TABLE IF NOT EXISTS models (
    card_sha256 TEXT PRIMARY KEY,   -- of model_card.json
    architecture TEXT NOT NULL,
    folder TEXT NOT NULL,           -- where its files are: relative to the store (installed) or as given to --model
    first_seen TEXT NOT NULL,       -- ISO 8601 UTC
    parent_card_sha256 TEXT,        -- the card's lineage: the model it was fine-tuned from
    card TEXT NOT NULL              -- the model card itself (JSON), kept after its files are gone
);
CREATE TABLE IF NOT EXISTS model_events (
    id INTEGER PRIMARY KEY,
    card_sha256 TEXT NOT NULL REFERENCES models(card_sha256),
    at TEXT NOT NULL,
    action TEXT NOT NULL            -- install / rollback
);
ALTER TABLE runs ADD COLUMN card_sha256 TEXT;
"""
MIGRATIONS = {3: SCHEMA_V3, 4: SCHEMA_V4, 5: SCHEMA_V5, 6: SCHEMA_V6}  # version -> the script that brings version - 1 up to it


def is_damage(exc: sqlite3.Error) -> bool:
    """Is this SQLite error a damaged file (corrupt pages, not a database), as opposed to a busy or full disk?"""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or \
        "malformed" in str(exc) or "not a database" in str(exc)


def store_error(exc: sqlite3.Error, folder: Path) -> StoreError:
    """The one-line error for a failed SQLite call: a damaged file says how to check and recover it."""
    db = folder / DB_FILE
    if is_damage(exc):
        return StoreError(f"store {db} is damaged ({exc}): see what is readable with 'edge-app store check --out "
                          f"{folder}', then copy every readable row into a new file with 'edge-app store recover "
                          f"--out {folder}' (the damaged file is kept)")
    return StoreError(f"cannot use store {db} ({exc}): check the folder, free space and permissions")


_T = TypeVar("_T")


def db_errors(func: Callable[..., _T]) -> Callable[..., _T]:
    """Turn SQLite errors of a function whose first argument is a :class:`Store` into one-line StoreErrors."""
    @functools.wraps(func)
    def wrapper(store: "Store", *args: Any, **kwargs: Any) -> _T:
        try:
            return func(store, *args, **kwargs)
        except sqlite3.ProgrammingError:
            raise  # a bug (closed connection, wrong parameters), not the file
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, store.folder) from None
    return wrapper


def check_slide_id(slide: str) -> str:
    """A slide ID is also a folder name: letters, digits, '.', '_' and '-', at most 64, not starting with '.'."""
    if not _SLIDE_ID.fullmatch(slide or ""):
        raise CytoEdgeError(f"bad slide ID {slide!r}: use 1-64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return slide


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CellResult:
    """What the app stores per cell (box at full resolution, the classifier's verdict)."""

    box: tuple[int, int, int, int]
    class_name: str
    group: str  # the group to store: the class's group, or "unknown" when flagged
    confidence: float
    distance: float | None
    unknown: bool
    p_abnormal: float | None = None  # calibrated probability of the abnormal group (the gallery's order)
    slide_xy: tuple[float, float] | None = None  # the box's top-left corner in slide coordinates (manual stage)


@dataclass(frozen=True)
class FieldPlace:
    """Where a settled field lies on the slide (manual stage): its top-left corner and its focus score."""

    x: float
    y: float
    focus: float


@dataclass
class SlideCounts:
    slide_id: str
    created: str
    class_names: list[str]
    class_groups: dict[str, str]
    frames: int
    cells: int
    per_class: dict[str, int]  # recognised cells per class (unknown cells not included)
    per_group: dict[str, int]  # normal / benign / abnormal / unknown, sums to ``cells``
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def abnormal_fraction(self) -> float:
        return self.per_group.get(ABNORMAL, 0) / self.cells if self.cells else 0.0


@dataclass
class CellRecord:
    id: int
    slide_id: str
    frame_seq: int
    frame_name: str
    box: tuple[int, int, int, int]
    class_name: str
    group: str
    confidence: float
    distance: float | None
    unknown: bool
    crop_path: str | None
    p_abnormal: float | None = None


class Store:
    """One store folder. Open with ``Store(folder)`` (creates it) or ``Store(folder, create=False)``."""

    def __init__(self, folder: str | Path, *, create: bool = True, min_free_mb: float = 200.0,
                 crop_policy: str = "review") -> None:
        if crop_policy not in CROP_POLICIES:
            raise CytoEdgeError(f"unknown crop policy {crop_policy!r}: choose from {', '.join(CROP_POLICIES)}")
        self.folder = Path(folder)
        self.db_path = self.folder / DB_FILE
        self.crop_policy = crop_policy
        self.min_free_mb = min_free_mb
        self.crops_enabled = crop_policy != "none"
        self.crop_warning = ""
        if not create and not self.db_path.is_file():
            raise StoreError(f"no store at {self.db_path}: run edge-app first, or pass the folder it wrote with --out")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: edge-app's writer thread commits frames while the main thread
            # classifies; one thread at a time uses the connection (edge_app.pipeline)
            self.conn = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, self.folder) from None
        except OSError as exc:
            raise StoreError(f"cannot create store folder {self.folder} ({exc.strerror or exc}): "
                             "choose a writable --out") from None

    # -- schema ----------------------------------------------------------------------------------
    def _schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.db_path} has schema version {version}, newer than this CytoEdge "
                             f"({SCHEMA_VERSION}): upgrade CytoEdge or use another --out")
        if version == SCHEMA_VERSION:
            return
        # versions 1 and 2 only added tables (SCHEMA creates what is missing); from 3 on, columns
        steps = "".join(MIGRATIONS[v] for v in range(max(3, version + 1), SCHEMA_VERSION + 1))
        try:
            self.conn.executescript(
                "BEGIN IMMEDIATE;" + SCHEMA + steps
                + f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION}, '{now_iso()}');"
                + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.DatabaseError:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            # another connection (the web view opening the store edge-app is creating) may have migrated it
            # between our read and our write lock: then the store is as it should be
            if self._schema_version() != SCHEMA_VERSION:
                raise

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn, self.folder)

    def close(self, checkpoint: bool = True) -> None:
        """Close; ``checkpoint=False`` skips folding the WAL into the file (for short-lived readers such as
        a web request, which must not stall the writer)."""
        if checkpoint:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                pass  # another reader holds the WAL: it is checkpointed later
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------
    @db_errors
    def open_slide(self, slide_id: str, class_names: Sequence[str], class_groups: dict[str, str]) -> None:
        """Create the slide, or continue it (a later run appends frames after the last one)."""
        check_slide_id(slide_id)
        row = self.conn.execute("SELECT class_names FROM slides WHERE id = ?", (slide_id,)).fetchone()
        if row is None:
            with self.transaction():
                self.conn.execute("INSERT INTO slides VALUES (?, ?, ?, ?)",
                                  (slide_id, now_iso(), json.dumps(list(class_names)), json.dumps(class_groups)))
        elif json.loads(row["class_names"]) != list(class_names):
            raise StoreError(f"slide {slide_id!r} was recorded with classes {json.loads(row['class_names'])}, "
                             f"this model has {list(class_names)}: use another --slide")

    @db_errors
    def start_run(self, slide_id: str, *, source: str, model: str, model_sha256: str, fmt: str, board: str,
                  threads: int, settings: dict[str, Any], card_sha256: str | None = None) -> int:
        """A new run; ``card_sha256`` names the model (a row of ``models``, see :meth:`remember_model`)."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (slide_id, started, source, model, model_sha256, format, board, threads, settings,"
                " card_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (slide_id, now_iso(), source, model, model_sha256, fmt, board, threads, json.dumps(settings),
                 card_sha256))
        return int(cur.lastrowid)

    @db_errors
    def end_run(self, run_id: int, summary: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET ended = ?, summary = ? WHERE id = ?",
                              (now_iso(), json.dumps(summary), run_id))

    @db_errors
    def next_seq(self, slide_id: str) -> int:
        row = self.conn.execute("SELECT MAX(seq) FROM frames WHERE slide_id = ?", (slide_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def wants_crop(self, cell: CellResult) -> bool:
        if not self.crops_enabled:
            return False
        if self.crop_policy == "all":
            return True
        if self.crop_policy == "abnormal":
            return cell.group == ABNORMAL
        return cell.group in (ABNORMAL, UNKNOWN)  # review

    @db_errors
    def add_frame(self, slide_id: str, run_id: int, *, name: str, size: tuple[int, int],
                  cells: Sequence[CellResult], crops: Sequence[np.ndarray | None] = (),
                  timings: dict[str, float] | None = None, seq: int | None = None, key: str | None = None,
                  place: FieldPlace | None = None) -> int:
        """Store one frame and its cells in one transaction; save the crops the policy asks for first.

        ``crops[i]`` is the crop of ``cells[i]`` (None: nothing to save). ``key`` is the frame's stable
        identity (:mod:`edge_app.resume`; None for a camera frame): a slide holds each key once, so a
        second record of a committed frame is refused (:class:`StoreError`) and its crops removed.
        ``place``: the field's position and focus on the slide (manual stage). Returns the frame's seq.
        """
        seq = self.next_seq(slide_id) if seq is None else seq
        paths = [self._save_crop(slide_id, seq, i, c, crops[i] if i < len(crops) else None)
                 for i, c in enumerate(cells)]
        if any(paths):  # each crop file is fsynced; one folder fsync makes their names durable before the commit
            fsync_dir(self.folder / CROPS_DIR / slide_id)
        t = timings or {}
        try:
            with self.transaction():
                self._insert_frame(slide_id, run_id, seq, name, size, cells, paths, t, key, place)
        except StoreError:
            self._drop_unreferenced(filter(None, paths))  # don't leave them for the leftovers sweep
            raise
        return seq

    def _drop_unreferenced(self, paths: Iterable[str]) -> None:
        for rel in paths:
            try:
                named = self.conn.execute("SELECT 1 FROM cells WHERE crop_path = ? LIMIT 1", (rel,)).fetchone()
            except sqlite3.DatabaseError:
                continue  # cannot tell: leave it to the sweep at the next start
            if named is None:
                (self.folder / rel).unlink(missing_ok=True)

    def _insert_frame(self, slide_id: str, run_id: int, seq: int, name: str, size: tuple[int, int],
                      cells: Sequence[CellResult], paths: list[str | None], t: dict[str, float],
                      key: str | None, place: FieldPlace | None = None) -> int:
        if key is not None:
            row = self.conn.execute("SELECT name FROM frames WHERE slide_id = ? AND frame_key = ?",
                                    (slide_id, key)).fetchone()
            if row is not None:
                raise StoreError(f"frame {name} is already recorded on slide {slide_id} (as {row[0]}): "
                                 "is another edge-app writing this slide?")
        cur = self.conn.execute(
            "INSERT INTO frames (slide_id, run_id, seq, name, captured, width, height, n_cells, finder_ms, "
            "classifier_ms, frame_key, stage_x, stage_y, focus) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (slide_id, run_id, seq, name, now_iso(), size[0], size[1], len(cells), t.get("find"), t.get("classify"),
             key, *((float(place.x), float(place.y), float(place.focus)) if place else (None, None, None))))
        frame_id = int(cur.lastrowid)
        self.conn.executemany(
            "INSERT INTO cells (frame_id, slide_id, idx, x, y, w, h, class_name, grp, confidence, distance, "
            "unknown, crop_path, p_abnormal, slide_x, slide_y) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(frame_id, slide_id, i, *map(int, c.box), c.class_name, c.group, float(c.confidence),
              None if c.distance is None or not np.isfinite(c.distance) else float(c.distance),
              int(c.unknown), paths[i], None if c.p_abnormal is None else float(c.p_abnormal),
              *(map(float, c.slide_xy) if c.slide_xy else (None, None)))
             for i, c in enumerate(cells)])
        return frame_id

    @db_errors
    def frame_keys(self, slide_id: str) -> dict[str, str]:
        """The identities of the frames this slide already holds -> the name each was recorded under."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT frame_key, name FROM frames WHERE slide_id = ? AND frame_key IS NOT NULL", (slide_id,))}

    @db_errors
    def slide_fields(self, slide_id: str) -> list[tuple[float, float, int, int, float]]:
        """The slide's settled fields (manual stage): (x, y, width, height, focus) in slide coordinates."""
        return [(float(r[0]), float(r[1]), int(r[2]), int(r[3]), float(r[4] or 0.0)) for r in self.conn.execute(
            "SELECT stage_x, stage_y, width, height, focus FROM frames WHERE slide_id = ? AND stage_x IS NOT NULL "
            "ORDER BY seq", (slide_id,))]

    @db_errors
    def slide_cell_boxes(self, slide_id: str) -> list[tuple[float, float, int, int]]:
        """The boxes of the slide's cells that have slide coordinates (manual stage): (x, y, w, h)."""
        return [(float(r[0]), float(r[1]), int(r[2]), int(r[3])) for r in self.conn.execute(
            "SELECT slide_x, slide_y, w, h FROM cells WHERE slide_id = ? AND slide_x IS NOT NULL ORDER BY id", (slide_id,))]

    @db_errors
    def clear_slide(self, slide_id: str) -> tuple[int, int]:
        """Delete the slide's frames and cells (``--rescan``), keeping the slide and its runs; their crop files
        go after the commit. Refused while any of its cells has a review (a reviewer's work is never dropped).
        Returns (frames, cells) deleted."""
        reviewed = self.conn.execute("SELECT COUNT(*) FROM reviews WHERE slide_id = ?", (slide_id,)).fetchone()[0]
        if reviewed:
            raise StoreError(f"slide {slide_id!r} has {reviewed} review(s) of its cells, which --rescan would "
                             "discard: export them first (edge-app export-reviews) and record the new pass under "
                             "another --slide")
        crops = [r[0] for r in self.conn.execute(
            "SELECT crop_path FROM cells WHERE slide_id = ? AND crop_path IS NOT NULL", (slide_id,))]
        with self.transaction():
            cells = self.conn.execute("DELETE FROM cells WHERE slide_id = ?", (slide_id,)).rowcount
            frames = self.conn.execute("DELETE FROM frames WHERE slide_id = ?", (slide_id,)).rowcount
        for rel in crops:
            (self.folder / rel).unlink(missing_ok=True)
        return frames, cells

    @db_errors
    def unfinished_runs(self) -> list[int]:
        """Runs that never ended and were never marked interrupted: killed, crashed, or still running."""
        return [r[0] for r in self.conn.execute("SELECT id FROM runs WHERE ended IS NULL AND summary IS NULL")]

    @db_errors
    def mark_interrupted(self, run_ids: Sequence[int], why: str) -> None:
        """Record in each run's summary that it did not end (``ended`` stays NULL: it did not finish cleanly)."""
        with self.transaction():
            self.conn.executemany("UPDATE runs SET summary = ? WHERE id = ? AND ended IS NULL",
                                  [(json.dumps({"stopped_by": why}), i) for i in run_ids])

    @db_errors
    def quick_check(self) -> str:
        """``PRAGMA quick_check`` ("ok" when sound): O(file size), the cheaper half of integrity_check."""
        return str(self.conn.execute("PRAGMA quick_check").fetchone()[0])

    @db_errors
    def referenced_crops(self) -> set[str]:
        """Every crop path a cell names (relative to the store folder)."""
        return {r[0] for r in self.conn.execute("SELECT crop_path FROM cells WHERE crop_path IS NOT NULL")}

    def _save_crop(self, slide_id: str, seq: int, idx: int, cell: CellResult, crop: np.ndarray | None) -> str | None:
        if crop is None or not self.wants_crop(cell):
            return None
        import cv2

        rel = Path(CROPS_DIR) / slide_id / f"{seq:06d}_{idx:03d}_{cell.class_name}.png"
        try:
            free_mb = shutil.disk_usage(self.folder).free / 2**20
            if free_mb < self.min_free_mb:
                raise OSError(errno.ENOSPC, f"only {free_mb:.0f} MB free, below the {self.min_free_mb:g} MB kept free")
            ok, png = cv2.imencode(".png", crop)
            if not ok:
                raise OSError(errno.EIO, "PNG encoding failed")
            new_folder = not (self.folder / rel).parent.is_dir()
            atomic_write_bytes(self.folder / rel, png.tobytes(), sync_dir=False)
            if new_folder:
                fsync_dir(self.folder / CROPS_DIR)
                fsync_dir(self.folder)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.crops_enabled = False
                self.crop_warning = (f"disk full ({exc.strerror or exc}): crop saving stopped; classification and "
                                     "the store go on. Free space and restart to save crops again.")
                log.warning(self.crop_warning)
                return None
            log.warning("crop %s not saved: %s", rel, exc.strerror or exc)
            return None
        return rel.as_posix()

    # -- reading ---------------------------------------------------------------------------------
    @db_errors
    def list_slides(self) -> list[SlideCounts]:
        """Every slide with its counts, newest first."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM slides ORDER BY created DESC, id")]
        return [self.slide_counts(i) for i in ids]

    @db_errors
    def has_slide(self, slide_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM slides WHERE id = ?", (slide_id,)).fetchone() is not None

    @db_errors
    def slide_counts(self, slide_id: str) -> SlideCounts:
        row = self.conn.execute("SELECT * FROM slides WHERE id = ?", (slide_id,)).fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT id FROM slides ORDER BY id")]
            hint = f"slides in this store: {', '.join(known[:10])}" if known else "this store has no slides yet"
            raise StoreError(f"no slide {slide_id!r} in {self.db_path} ({hint})")
        names = json.loads(row["class_names"])
        per_class = dict.fromkeys(names, 0)
        per_group = dict.fromkeys(GROUPS, 0)
        for r in self.conn.execute("SELECT class_name, grp, unknown, COUNT(*) FROM cells WHERE slide_id = ? "
                                   "GROUP BY class_name, grp, unknown", (slide_id,)):
            per_group[r[1]] = per_group.get(r[1], 0) + r[3]
            if not r[2]:
                per_class[r[0]] = per_class.get(r[0], 0) + r[3]
        frames = self.conn.execute("SELECT COUNT(*) FROM frames WHERE slide_id = ?", (slide_id,)).fetchone()[0]
        runs = [dict(r) for r in self.conn.execute(
            "SELECT id, started, ended, source, model, model_sha256, format, board, threads, summary, settings, card_sha256 "
            "FROM runs WHERE slide_id = ? ORDER BY id", (slide_id,))]
        for r in runs:
            r["summary"] = json.loads(r["summary"]) if r["summary"] else None
            r["settings"] = json.loads(r["settings"]) if r["settings"] else {}
        return SlideCounts(slide_id, row["created"], names, json.loads(row["class_groups"]), int(frames),
                           sum(per_group.values()), per_class, per_group, runs)

    @db_errors
    def cells_to_review(self, slide_id: str | None = None, *, limit: int | None = None,
                        groups: Sequence[str] = (ABNORMAL, UNKNOWN)) -> list[CellRecord]:
        """Cells of the given groups, most doubtful first (unknown first, then lowest confidence)."""
        sql = ("SELECT c.*, f.seq AS frame_seq, f.name AS frame_name FROM cells c JOIN frames f ON f.id = c.frame_id "
               f"WHERE c.grp IN ({','.join('?' * len(groups))})")
        args: list[Any] = list(groups)
        if slide_id is not None:
            sql += " AND c.slide_id = ?"
            args.append(slide_id)
        sql += " ORDER BY c.unknown DESC, c.confidence ASC, c.id ASC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._record(r) for r in self.conn.execute(sql, args)]

    @db_errors
    def most_suspicious(self, slide_id: str, k: int) -> list[CellRecord]:
        """The ``k`` cells not rejected with the highest calibrated abnormal probability (the gallery), highest first."""
        sql = ("SELECT c.*, f.seq AS frame_seq, f.name AS frame_name FROM cells c JOIN frames f ON f.id = c.frame_id "
               "WHERE c.slide_id = ? AND c.unknown = 0 AND c.p_abnormal IS NOT NULL "
               "ORDER BY c.p_abnormal DESC, c.id ASC LIMIT ?")
        return [self._record(r) for r in self.conn.execute(sql, (slide_id, int(k)))]

    def suspicion_order(self, slide_id: str, k: int) -> list[CellRecord]:
        """What a reviewer looks at first: the ``k`` most suspicious cells, then the doubtful and unknown ones
        (:meth:`cells_to_review`'s order), each cell once."""
        top = self.most_suspicious(slide_id, k)
        seen = {c.id for c in top}
        return top + [c for c in self.cells_to_review(slide_id) if c.id not in seen]

    @db_errors
    def cell(self, cell_id: int) -> CellRecord | None:
        if not 0 < int(cell_id) <= MAX_ROWID:
            return None  # SQLite ids are positive 64-bit integers: a larger number names no cell
        r = self.conn.execute("SELECT c.*, f.seq AS frame_seq, f.name AS frame_name FROM cells c "
                              "JOIN frames f ON f.id = c.frame_id WHERE c.id = ?", (int(cell_id),)).fetchone()
        return None if r is None else self._record(r)

    def crop_file(self, cell_id: int) -> Path | None:
        """The crop image of a cell, only when it exists inside this store's crops folder."""
        rec = self.cell(cell_id)
        if rec is None or not rec.crop_path:
            return None
        root = (self.folder / CROPS_DIR).resolve()
        path = (self.folder / rec.crop_path).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    @staticmethod
    def _record(r: sqlite3.Row) -> CellRecord:
        return CellRecord(int(r["id"]), r["slide_id"], int(r["frame_seq"]), r["frame_name"],
                          (r["x"], r["y"], r["w"], r["h"]), r["class_name"], r["grp"], float(r["confidence"]),
                          r["distance"], bool(r["unknown"]), r["crop_path"],
                          r["p_abnormal"] if "p_abnormal" in r.keys() else None)

    @db_errors
    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` ("ok" when the file is sound)."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error), for an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection, folder: Path) -> None:
        self.conn, self.folder = conn, folder

    def __enter__(self) -> None:
        for attempt in range(50):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise StoreError(f"store is busy ({exc}): is another edge-app writing it?") from None
                time.sleep(0.1)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._rollback()
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.ProgrammingError):
                raise store_error(exc, self.folder) from None
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            self._rollback()
            raise store_error(err, self.folder) from None

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # SQLite already rolled back (a damaged file or a full disk can end the transaction itself)
