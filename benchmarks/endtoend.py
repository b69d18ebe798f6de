"""End to end on microscope frames: edge_app's cell finder + classifier per frame, frames/s and cells/s.

The same calls as the app's loop (:func:`edge_app.finder.find_cells`,
:func:`edge_app.finder.crops_of`, :meth:`edge_app.classifier.Classifier.classify`),
without the store and the display, for each device format (TFLite). The frames are
read once before timing, so disk speed does not count.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cytoedge.edge_app.card import ModelCard
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.formats import get_format


def read_frames(paths: Sequence[Path]) -> list[Any]:
    from cytoedge.edge_app.sources import read_image

    frames = []
    for p in paths:
        image, why = read_image(p)
        if image is None:
            raise CytoEdgeError(f"cannot read frame {p} ({why}): remove it from the --frames folder")
        frames.append(image)
    return frames


def run_frames(card: ModelCard, formats: Sequence[str], paths: Sequence[Path], *,
               threads: Mapping[str, int]) -> dict[str, Any]:
    """``{format: {status, frames, cells, frames_per_s, cells_per_s, find_ms, classify_ms, per_frame latency}}``.

    ``threads`` gives each format's interpreter threads (the run uses the fastest one measured).
    """
    from cytoedge.benchmarks.latency import summarize
    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.edge_app.finder import crops_of, find_cells

    frames = read_frames(paths)
    out: dict[str, Any] = {}
    for fmt in formats:
        if not get_format(fmt).device:
            continue
        try:
            clf = Classifier(card.directory, fmt, threads=threads[fmt], allow_rejected=True)
            clf.classify(crops_of(frames[0], find_cells(frames[0])))  # warm-up: allocation, XNNPACK packing
            find_s, cls_s, total, cells = 0.0, 0.0, [], 0
            for image in frames:
                t0 = time.perf_counter()
                crops = crops_of(image, find_cells(image))
                t1 = time.perf_counter()
                preds = clf.classify(crops)
                t2 = time.perf_counter()
                find_s += t1 - t0
                cls_s += t2 - t1
                total.append(t2 - t0)
                cells += len(preds)
        except Exception as exc:  # noqa: BLE001 - recorded per format, the others still run
            first = (str(exc).strip().splitlines() or [""])[0]
            out[fmt] = {"status": "failed", "reason": first if isinstance(exc, CytoEdgeError) else f"{type(exc).__name__}: {first}"}
            continue
        seconds = sum(total)
        stats = summarize(total).to_dict()
        out[fmt] = {"status": "ok", "reason": "", "threads": threads[fmt], "frames": len(frames), "cells": cells,
                    "seconds": seconds, "frames_per_s": len(frames) / seconds if seconds else None,
                    "cells_per_s": cells / seconds if seconds else None,
                    "find_ms_per_frame": find_s * 1e3 / len(frames), "classify_ms_per_frame": cls_s * 1e3 / len(frames),
                    "frame_ms": {k: stats[k] for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")}}
    return out
