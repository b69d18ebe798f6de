"""Result files: one JSON per run under ``results/<board>/``, written atomically, read back for the report.

A result holds every figure and the environment it was measured in::

    {"schema": "cytoedge-bench/1", "created": ..., "board": {...}, "environment": {...},
     "settings": {...}, "thermal": {"before": ..., "after": ..., "warning": ...},
     "models": [{"name", "dir", "architecture", "artifacts": {format: {file, size_bytes, sha256,
                 cost, activation, crosscheck}}, "accuracy": {format: {...}}, "end_to_end": {...}}],
     "rows": [{"model", "format", "threads", "batch", "status", "reason", <probe figures>}]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.errors import CytoEdgeError

RESULT_SCHEMA = "cytoedge-bench/1"


class ResultsError(CytoEdgeError):
    """A result file is missing, unreadable, or of an unknown schema."""


def result_path(out_dir: str | Path, board_slug: str, created: datetime) -> Path:
    """``out_dir/<board>/<YYYYmmdd-HHMMSS>.json``, with a suffix if that name is taken."""
    folder = Path(out_dir) / board_slug
    stem = created.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


def write_result(doc: dict[str, Any], out_dir: str | Path) -> Path:
    created = datetime.fromisoformat(doc["created"])
    return atomic_write_json(result_path(out_dir, doc["board"]["slug"], created), doc)


def _files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*.json") if not f.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise ResultsError(f"{p} does not exist: pass result files or the folder bench-device wrote (results/)")
    return files


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every result file under ``paths`` (files or folders, searched recursively), oldest first."""
    docs = []
    for f in _files(paths):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"result file {f} cannot be read ({exc}): remove it or run bench-device again") from None
        if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise ResultsError(f"{f} is not a bench-device result of schema {RESULT_SCHEMA} (found {found!r}): "
                               "remove it from the folder or re-run bench-device")
        doc["_file"] = str(f)
        docs.append(doc)
    if not docs:
        raise ResultsError(f"no result files (*.json) under {', '.join(map(str, paths))}: run bench-device first")
    return sorted(docs, key=lambda d: d.get("created", ""))
