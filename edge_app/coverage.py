"""The coverage map of a slide (manual stage): the union of its counted fields in slide coordinates,
as a picture for the live page, the slide page and ``edge-app report``, and what adequacy says so far.

One picture for all three (:func:`coverage_png`), so the operator at the microscope, the slide page
and the report show the same map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cytoedge.edge_app.adequacy import Adequacy
from cytoedge.edge_app.classes import UNKNOWN
from cytoedge.edge_app.stage import coverage_area, coverage_mask
from cytoedge.edge_app.store import SlideCounts, Store

FIELD_BGR = (170, 225, 170)  # the covered area
EDGE_BGR = (60, 130, 60)  # each field's outline
LAST_BGR = (0, 140, 255)  # the latest field


def coverage_picture(fields: Sequence[tuple[float, float, int, int]], width: int = 480) -> np.ndarray:
    """The fields (x, y, w, h in slide px) drawn to scale, ``width`` px wide: the covered union filled, each
    field outlined, the latest one in orange. Slide x right, y down, as the camera sees it."""
    import cv2

    if not fields:
        raise ValueError("no fields to draw")
    x0 = min(f[0] for f in fields)
    y0 = min(f[1] for f in fields)
    span_w = max(f[0] + f[2] for f in fields) - x0
    span_h = max(f[1] + f[3] for f in fields) - y0
    s = (width - 8) / max(span_w, 1.0)
    height = max(16, int(round(span_h * s)) + 8)
    mask, mx, my = coverage_mask(fields, s)
    img = np.full((height, width, 3), 255, np.uint8)
    region = img[4:4 + mask.shape[0], 4:4 + mask.shape[1]]
    region[mask[:region.shape[0], :region.shape[1]] > 0] = FIELD_BGR
    for i, (x, y, w, h) in enumerate(fields):
        p0 = (4 + int(round((x - x0) * s)), 4 + int(round((y - y0) * s)))
        p1 = (4 + int(round((x + w - x0) * s)) - 1, 4 + int(round((y + h - y0) * s)) - 1)
        last = i == len(fields) - 1
        cv2.rectangle(img, p0, p1, LAST_BGR if last else EDGE_BGR, 2 if last else 1)
    return img


def coverage_png(fields: Sequence[tuple[float, float, int, int]], width: int = 480) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", coverage_picture(fields, width))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


def slide_fields(store: Store, slide: str) -> list[tuple[float, float, int, int]]:
    """The slide's counted fields as rectangles (x, y, w, h)."""
    return [f[:4] for f in store.slide_fields(slide)]


def progress(counts: SlideCounts, fields: Sequence[tuple[float, float, int, int]], threshold: int) -> dict[str, Any]:
    """What the live page shows beside the map: fields, covered area, adequacy, the abnormal share so far."""
    classifiable = counts.cells - counts.per_group.get(UNKNOWN, 0)
    ad = Adequacy(classifiable, threshold)
    frame_px = fields[-1][2] * fields[-1][3] if fields else 0
    area = coverage_area(fields) if fields else 0.0
    return {"fields": len(fields), "coverage_px2": round(area), "coverage_fields": round(area / frame_px, 2) if frame_px else 0,
            "classifiable": classifiable, "threshold": threshold, "adequate": ad.adequate, "missing": ad.missing,
            "adequacy_text": "adequate: you may stop" if ad.adequate else ad.text(),
            "abnormal_fraction": round(counts.abnormal_fraction, 4)}


__all__ = ["coverage_picture", "coverage_png", "progress", "slide_fields"]
