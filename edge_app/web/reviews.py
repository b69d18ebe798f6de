"""Review records and their export as an ImageFolder tree for the next ``edge-train``.

A review is its own row in the store's ``reviews`` table (schema version 2): who
(the name the reviewer typed), when, the model's label and group, the reviewer's
label and an optional note. The model's output in ``cells`` is never changed; a
cell may be reviewed again, and the latest review of a cell is the one that counts.

The queue holds the saved crops of abnormal and unknown cells. For one slide it
leads with the suspicion order (:meth:`~edge_app.store.Store.suspicion_order`): the
:data:`SUSPICIOUS` cells most likely abnormal (highest calibrated abnormal probability
among cells not rejected), then the most doubtful: unknown (rejected) cells first,
then by *doubt* = 1 - the model's top-class confidence (the store's
:meth:`~edge_app.store.Store.cells_to_review` order, also the order over all slides).

:func:`export_imagefolder` writes ``DIR/<class>/<frame>_<cell>.png`` (one folder
per class name, which ``edge-train --data DIR`` reads; crops of one frame share a
group, so folds keep them together) and ``DIR/cytoedge-reviews.csv`` listing every
file with its cell, slide, reviewer and labels. Cells reviewed as ``not_a_cell``
are listed in that file but get no folder: they are not a class to train on.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_text, public_dir
from cytoedge.edge_app.classes import ABNORMAL, GROUPS, UNKNOWN
from cytoedge.edge_app.csvsafe import SafeWriter
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.store import MAX_ROWID, CellRecord, Store, db_errors, now_iso

NOT_A_CELL = "not_a_cell"  # the reviewer's label for debris, a fold or an out-of-focus blob
MAX_REVIEWER = 64  # characters
MAX_NOTE = 500  # characters
MANIFEST = "cytoedge-reviews.csv"


class ReviewError(CytoEdgeError):
    """A review that cannot be stored (unknown cell or label, bad reviewer name or note)."""


@dataclass(frozen=True)
class Review:
    id: int
    cell_id: int
    slide_id: str
    reviewer: str
    reviewed: str  # ISO 8601 UTC
    old_label: str  # the model's top class
    old_group: str  # the model's group (unknown when it rejected the cell)
    new_label: str  # the reviewer's class, or not_a_cell
    note: str

    @property
    def confirmed(self) -> bool:
        """The reviewer kept the model's class (for a rejected cell: named the class the model leaned to)."""
        return self.new_label == self.old_label


@dataclass(frozen=True)
class QueueItem:
    cell: CellRecord
    latest: Review | None  # the cell's latest review, None while unreviewed

    @property
    def doubt(self) -> float:
        """1 - the model's top-class confidence (the queue puts unknown cells first, then the largest doubt)."""
        return round(1.0 - self.cell.confidence, 4)


@dataclass
class ExportResult:
    folder: Path
    per_class: Counter = field(default_factory=Counter)  # files written per class folder
    not_a_cell: int = 0  # reviews that named no class (listed in the manifest only)
    missing_crop: int = 0  # reviewed cells whose crop file is gone

    @property
    def files(self) -> int:
        return sum(self.per_class.values())


def _clean_text(value: object, what: str, limit: int, *, required: bool, newlines: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ReviewError(f"{what} must be text")
    text = value.replace("\r\n", "\n").strip()
    if required and not text:
        raise ReviewError(f"{what} is empty: type a name (it is kept with the review)")
    if len(text) > limit:
        raise ReviewError(f"{what} is {len(text)} characters long: at most {limit}")
    allowed = "\n\t" if newlines else ""
    if any(unicodedata.category(ch).startswith("C") and ch not in allowed for ch in text):
        raise ReviewError(f"{what} holds control characters: use plain text")
    return text


def cell_id_of(value: object) -> int:
    """A cell id from a form field or JSON: a whole number (digits, or a JSON integer that is not a boolean)
    in SQLite's id range; anything else is a :class:`ReviewError` (400), never a lookup.

    >>> cell_id_of("42"), cell_id_of(42)
    (42, 42)
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ReviewError("cell must be a cell id (a whole number)")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise ReviewError("cell must be a cell id (a whole number)")
        value = int(text)
    if not 0 < value <= MAX_ROWID:
        raise ReviewError(f"cell must be a cell id between 1 and {MAX_ROWID}")
    return value


def check_reviewer(name: object) -> str:
    """The reviewer's name, stripped: 1-64 printable characters.

    >>> check_reviewer("  A. Ngata ")
    'A. Ngata'
    """
    return _clean_text(name, "reviewer name", MAX_REVIEWER, required=True, newlines=False)


def check_note(note: object) -> str:
    return _clean_text(note, "note", MAX_NOTE, required=False, newlines=True)


def allowed_labels(store: Store, slide_id: str) -> list[str]:
    """The labels a reviewer may give a cell of this slide: its model's class names, then ``not_a_cell``."""
    return [*store.slide_counts(slide_id).class_names, NOT_A_CELL]


def _review(r: sqlite3.Row) -> Review:
    return Review(int(r["id"]), int(r["cell_id"]), r["slide_id"], r["reviewer"], r["reviewed"], r["old_label"],
                  r["old_group"], r["new_label"], r["note"])


@db_errors
def add_review(store: Store, cell_id: int, new_label: str, reviewer: str, note: str = "") -> Review:
    """Validate and store one review (its own row; the cell is left as the model wrote it)."""
    cell = store.cell(cell_id)
    if cell is None:
        raise ReviewError(f"no cell {cell_id} in this store: reload the review queue")
    labels = allowed_labels(store, cell.slide_id)
    if new_label not in labels:
        raise ReviewError(f"unknown label {str(new_label)[:40]!r}: choose one of {', '.join(labels)}")
    who, text = check_reviewer(reviewer), check_note(note)
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO reviews (cell_id, slide_id, reviewer, reviewed, old_label, old_group, new_label, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (cell.id, cell.slide_id, who, now_iso(), cell.class_name, cell.group, new_label, text))
    row = store.conn.execute("SELECT * FROM reviews WHERE id = ?", (cur.lastrowid,)).fetchone()
    return _review(row)


@db_errors
def reviews(store: Store, *, slide_id: str | None = None, cell_id: int | None = None,
            limit: int | None = None) -> list[Review]:
    """Reviews, newest first."""
    sql, args = "SELECT * FROM reviews WHERE 1", []
    if slide_id is not None:
        sql += " AND slide_id = ?"
        args.append(slide_id)
    if cell_id is not None:
        sql += " AND cell_id = ?"
        args.append(int(cell_id))
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [_review(r) for r in store.conn.execute(sql, args)]


def latest_reviews(store: Store, slide_id: str | None = None) -> dict[int, Review]:
    """The latest review of every reviewed cell, by cell id."""
    latest: dict[int, Review] = {}
    for r in reversed(reviews(store, slide_id=slide_id)):
        latest[r.cell_id] = r
    return latest


SUSPICIOUS = 30  # the queue of a slide leads with this many cells most likely abnormal (the report's gallery)
QUEUE_ORDERS = ("doubt", "learning")


def review_queue(store: Store, slide_id: str | None = None, *, include_reviewed: bool = False,
                 limit: int = 50, offset: int = 0, order: str = "doubt") -> tuple[list[QueueItem], int]:
    """(one page of the queue, how many items the whole queue holds): cells with a saved crop.

    ``doubt`` (screening): for one slide the SUSPICIOUS cells most likely abnormal first, then the abnormal and
    unknown cells, unknown first, then the least confident. ``learning``: every cell with a crop, in the order
    that teaches a fine-tune most (:func:`edge_app.review_order.learning_order`: least confident first, spread
    over slides and classes)."""
    if order not in QUEUE_ORDERS:
        raise ReviewError(f"unknown queue order {str(order)[:20]!r}: choose one of {', '.join(QUEUE_ORDERS)}")
    done = latest_reviews(store, slide_id)
    if order == "learning":
        cells = store.cells_to_review(slide_id, groups=GROUPS)
    else:
        cells = store.suspicion_order(slide_id, SUSPICIOUS) if slide_id else store.cells_to_review(None)
    items = [QueueItem(c, done.get(c.id)) for c in cells
             if c.crop_path and (include_reviewed or c.id not in done)]
    if order == "learning":
        from cytoedge.edge_app.review_order import learning_order

        cells = [it.cell for it in items]
        items = [items[i] for i in learning_order([c.slide_id for c in cells], [c.class_name for c in cells],
                                                  [1.0 - c.confidence for c in cells])]
    return items[offset:offset + limit], len(items)


def _export_rows(store: Store) -> Iterator[tuple[Review, CellRecord, int]]:
    """(latest review, cell, frame row id) of every reviewed cell, oldest cell first."""
    for cell_id, rev in sorted(latest_reviews(store).items()):
        cell = store.cell(cell_id)
        frame = store.conn.execute("SELECT frame_id FROM cells WHERE id = ?", (cell_id,)).fetchone()
        if cell is not None and frame is not None:
            yield rev, cell, int(frame[0])


@db_errors
def export_entries(store: Store) -> tuple[list[tuple[str, Path]], str, ExportResult]:
    """(class-folder files as (relative path, crop file), the manifest CSV text, the counts)."""
    result = ExportResult(Path())
    files: list[tuple[str, Path]] = []
    buf = io.StringIO()
    w = SafeWriter(buf, lineterminator="\n")  # notes, names and file names are typed by people: no formulas
    w.writerow(["file", "cell", "slide", "frame", "model_label", "model_group", "confidence", "label", "reviewer",
                "reviewed", "note"])
    for rev, cell, frame_id in _export_rows(store):
        rel = ""
        if rev.new_label == NOT_A_CELL:
            result.not_a_cell += 1
        else:
            crop = store.crop_file(cell.id)
            if crop is None:
                result.missing_crop += 1
            else:
                rel = f"{rev.new_label}/{frame_id}_{cell.id}{crop.suffix}"
                files.append((rel, crop))
                result.per_class[rev.new_label] += 1
        w.writerow([rel, cell.id, cell.slide_id, cell.frame_name, rev.old_label, rev.old_group,
                    round(cell.confidence, 4), rev.new_label, rev.reviewer, rev.reviewed, rev.note])
    return files, buf.getvalue(), result


def _no_files_error(result: ExportResult) -> ReviewError:
    why = (f" ({result.not_a_cell} marked not_a_cell, {result.missing_crop} without a crop file)"
           if result.not_a_cell or result.missing_crop else "")
    return ReviewError(f"no reviewed cell with a class label to export{why}: review crops in the web view's "
                       "review queue first")


def export_imagefolder(store: Store, dest: str | Path) -> ExportResult:
    """Write the reviewed crops as ``dest/<class>/<frame>_<cell>.png`` plus the manifest; all or nothing.

    ``dest`` must be new, empty, or an earlier export (it has the manifest), which is replaced whole.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MANIFEST).is_file())):
        raise ReviewError(f"{dest} exists and is not an earlier review export: choose a new or empty folder")
    files, manifest, result = export_entries(store)
    if not files:
        raise _no_files_error(result)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = public_dir(tempfile.mkdtemp(prefix=f".{dest.name}.export-", dir=dest.parent))
    try:
        for rel, crop in files:
            atomic_write_bytes(staging / rel, crop.read_bytes())
        atomic_write_text(staging / MANIFEST, manifest)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{staging.name[-8:]}")
            dest.rename(old)
        staging.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.folder = dest
    return result


def export_zip(store: Store) -> tuple[bytes, ExportResult]:
    """The same tree as :func:`export_imagefolder`, as a zip archive in memory (for the web view's download)."""
    files, manifest, result = export_entries(store)
    if not files:
        raise _no_files_error(result)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for rel, crop in files:
            zf.writestr(f"reviews/{rel}", crop.read_bytes())
        zf.writestr(f"reviews/{MANIFEST}", manifest)
    return buf.getvalue(), result
