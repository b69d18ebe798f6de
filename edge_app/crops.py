"""``edge-app classify``: single-cell crops from files, classified without the cell finder.

``crop_files`` expands what the user typed (image files, folders - searched
recursively; in a SIPaKMeD tree only the ``CROPPED/`` crops, not the cluster pictures -
and globs) into image files in natural order; ``classify_files`` reads
them one by one (an unreadable file is logged, skipped and counted, as in the app) and
classifies them in batches with the one :class:`~edge_app.classifier.Classifier`;
``write_json`` / ``write_csv`` write the rows atomically. Every row holds: file,
class, clinical group (``unknown`` when rejected), the calibrated confidence, the
open-set score and the unknown flag.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_text
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.preprocess import as_bgr_uint8
from cytoedge.edge_app.sources import IMAGE_EXTENSIONS, read_image

log = logging.getLogger("cytoedge.edge_app")
ROW_KEYS = ("file", "class", "group", "confidence", "score", "unknown")  # the JSON objects' keys, the CSV header
BATCH = 64  # crops read before one classify call (memory stays small on a Pi)


@dataclass
class CropRow:
    file: str
    class_name: str
    group: str
    confidence: float
    score: float
    unknown: bool

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "class": self.class_name, "group": self.group,
                "confidence": round(self.confidence, 6), "score": round(self.score, 6) if np.isfinite(self.score) else None,
                "unknown": self.unknown}


@dataclass
class CropRun:
    rows: list[CropRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def per_group(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.group] = out.get(r.group, 0) + 1
        return out


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for part in path.parts for t in re.split(r"(\d+)", part)]


def _images_below(folder: Path) -> list[Path]:
    """Image files below ``folder`` (hidden ones left out); in a SIPaKMeD class folder - one that holds
    ``CROPPED/`` - only the crops: its own images are the cluster pictures the crops were cut from."""
    found = []
    for d, subdirs, files in os.walk(folder):
        subdirs[:] = [s for s in subdirs if not s.startswith(".")]
        if "CROPPED" in subdirs:
            continue
        found += [Path(d) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found, key=_natural)


def crop_files(specs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``specs`` (files, folders searched recursively, globs), each once, in order given."""
    out: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = _images_below(p)
            if not found:
                raise CytoEdgeError(f"no image files in folder {p} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif p.is_file():
            found = [p]  # named explicitly: read it, whatever its extension (an unreadable one is skipped)
        else:
            matched = [Path(m) for m in glob.glob(str(spec), recursive=True)]
            found = sorted((m for m in matched if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS), key=_natural)
            for d in (m for m in matched if m.is_dir()):
                found += _images_below(d)
            if not found:
                raise CytoEdgeError(f"{spec}: no such file or folder, and no image matches it as a glob")
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def read_crop(path: Path) -> tuple[np.ndarray | None, str]:
    """A crop as BGR uint8 (grey, RGBA, 16-bit converted), or ``(None, why)``."""
    image, why = read_image(path)
    if image is None:
        return None, why
    try:
        return as_bgr_uint8(image), ""
    except ValueError as exc:
        return None, str(exc)


def classify_files(clf: Any, files: Iterable[Path], batch: int = BATCH) -> CropRun:
    """Classify every readable file with ``clf`` (an :class:`~edge_app.classifier.Classifier`)."""
    run = CropRun()
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        preds = clf.classify([img for _, img in pending])
        run.rows.extend(CropRow(str(f), p.class_name, p.group, p.confidence, p.score, p.unknown)
                        for (f, _), p in zip(pending, preds))
        pending.clear()

    for f in files:
        img, why = read_crop(f)
        if img is None:
            run.skipped.append((str(f), why))
            log.warning("skipped %s: %s", f, why)
            continue
        pending.append((f, img))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return run


def write_json(run: CropRun, path: Path) -> None:
    """A JSON list of objects with the keys of :data:`ROW_KEYS`."""
    atomic_write_text(path, json.dumps([r.to_dict() for r in run.rows], indent=1) + "\n")


def write_csv(run: CropRun, path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_KEYS, lineterminator="\n")
    w.writeheader()
    for r in run.rows:
        w.writerow(r.to_dict())
    atomic_write_text(path, buf.getvalue())


def print_table(run: CropRun, title: str) -> None:
    """One row per image on the terminal (rich), unknown rows dimmed."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for name, justify in (("file", "left"), ("class", "left"), ("group", "left"), ("confidence", "right"),
                          ("score", "right"), ("unknown", "left")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in run.rows:
        t.add_row(r.file, r.class_name, r.group, f"{r.confidence:.3f}", f"{r.score:.3f}", "yes" if r.unknown else "",
                  style="dim" if r.unknown else None)
    console = Console()
    if not console.is_terminal:  # a pipe or a file: do not squeeze the rows into 80 columns
        console = Console(width=200)
    console.print(t)


__all__ = ["CropRow", "CropRun", "ROW_KEYS", "classify_files", "crop_files", "print_table", "read_crop",
           "write_csv", "write_json"]
