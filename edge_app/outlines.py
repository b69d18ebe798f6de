"""Cell outlines in SIPaKMeD's ``.dat`` format: one ``x,y`` point per line, in pixels.

The public download writes a point per line separated by a comma (``123.4,567.8``);
some copies use spaces or tabs instead. Both are read. ``x`` grows to the right and
``y`` downwards, in the coordinates of the image the file sits beside (the cluster
frame for ``NNN_cyt01.dat``, the crop for ``CROPPED/NNN_01_cyt.dat``).

The synthetic generator writes these files, the SIPaKMeD reader and the cell-finder
benchmark read them. numpy only: this module is part of the device contract.

>>> pts = parse_outline("10,20\\n30 20\\n30\\t40\\n")
>>> pts.tolist()
[[10.0, 20.0], [30.0, 20.0], [30.0, 40.0]]
>>> format_outline(pts)
'10.0,20.0\\n30.0,20.0\\n30.0,40.0\\n'
>>> outline_bbox(np.array([[10.2, 20.0], [30.0, 20.5], [29.5, 40.7]]))
(10, 20, 20, 21)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_text
from cytoedge.edge_app.errors import CytoEdgeError

_SEPARATORS = re.compile(r"[,;\s]+")


class OutlineError(CytoEdgeError):
    """An outline file is missing, unreadable, or not a list of ``x,y`` points."""


def parse_outline(text: str, source: str = "outline") -> np.ndarray:
    """The points of an outline written as text -> ``N x 2`` float64 array (N >= 3).

    Blank lines and lines starting with ``#`` are skipped. ``source`` names the file
    in error messages.
    """
    points: list[tuple[float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in _SEPARATORS.split(line) if f]
        try:
            if len(fields) != 2:
                raise ValueError
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise OutlineError(f"{source}: line {lineno} is not an 'x,y' point: {line[:40]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise OutlineError(f"{source}: line {lineno} holds a non-finite coordinate: {line[:40]!r}")
        points.append((x, y))
    if len(points) < 3:
        raise OutlineError(f"{source}: an outline needs at least 3 'x,y' points, found {len(points)}")
    return np.asarray(points, dtype=np.float64)


def read_outline(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``.dat`` outline file -> ``N x 2`` float64 array of ``(x, y)`` points."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OutlineError(f"cannot read outline {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return parse_outline(text, source=str(path))


def format_outline(points: np.ndarray, decimals: int = 1) -> str:
    """``N x 2`` points -> the ``.dat`` text (``x,y`` per line, ``decimals`` places)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise OutlineError(f"an outline is an N x 2 array with N >= 3, got shape {pts.shape}")
    fmt = f"{{:.{decimals}f}},{{:.{decimals}f}}\n"
    # "+ 0.0" turns a rounded -0.0 into 0.0 so equal outlines give equal bytes.
    return "".join(fmt.format(x + 0.0, y + 0.0) for x, y in np.round(pts, decimals))


def write_outline(path: str | os.PathLike[str], points: np.ndarray, decimals: int = 1) -> Path:
    """Write ``points`` as a ``.dat`` outline file, atomically."""
    return atomic_write_text(path, format_outline(points, decimals))


def outline_bbox(points: np.ndarray) -> tuple[int, int, int, int]:
    """The integer pixel box ``(x, y, w, h)`` that holds every point (floor of the minimum, ceil of the maximum)."""
    pts = np.asarray(points, dtype=np.float64)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


__all__ = ["OutlineError", "format_outline", "outline_bbox", "parse_outline", "read_outline", "write_outline"]
