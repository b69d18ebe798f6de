"""Matching the cell finder's detections to labelled outlines (IoU, one-to-one, best first).

The cell-finder benchmark (``benchmarks.finder_accuracy``) scores the finder with it, and
the device view (``train.data.device_view``) uses it to turn labelled frames into labelled
finder crops. A detection matches at most one outline and an outline at most one
detection, greedily by decreasing IoU; a match needs IoU >= the threshold (0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MATCH_IOU = 0.5  # a detection is that cell when their IoU reaches this


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """IoU of two (x, y, w, h) boxes.

    >>> box_iou((0, 0, 10, 10), (5, 0, 10, 10))
    0.3333333333333333
    """
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def mask_ious(truth_polys: list[np.ndarray], det_polys: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """cells x detections IoU of the filled outlines, computed inside each pair's joint box (``size``: w, h)."""
    import cv2

    w, h = size
    out = np.zeros((len(truth_polys), len(det_polys)))
    boxes_t = [cv2.boundingRect(p.astype(np.int32)) for p in truth_polys]
    boxes_d = [cv2.boundingRect(p.astype(np.int32)) for p in det_polys]
    for i, (pt, bt) in enumerate(zip(truth_polys, boxes_t)):
        for j, (pd, bd) in enumerate(zip(det_polys, boxes_d)):
            if box_iou(bt, bd) == 0.0:
                continue
            x0, y0 = max(0, min(bt[0], bd[0])), max(0, min(bt[1], bd[1]))
            x1 = min(w, max(bt[0] + bt[2], bd[0] + bd[2]) + 1)
            y1 = min(h, max(bt[1] + bt[3], bd[1] + bd[3]) + 1)
            mt = np.zeros((y1 - y0, x1 - x0), np.uint8)
            md = np.zeros_like(mt)
            cv2.fillPoly(mt, [np.round(pt - (x0, y0)).astype(np.int32)], 1)
            cv2.fillPoly(md, [(pd - (x0, y0)).astype(np.int32)], 1)
            union = np.count_nonzero(mt | md)
            out[i, j] = np.count_nonzero(mt & md) / union if union else 0.0
    return out


def greedy_matches(iou: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """One-to-one matches (cell, detection, IoU) with IoU >= threshold, best first.

    >>> greedy_matches(np.array([[0.9, 0.6], [0.7, 0.2]]), 0.5)
    [(0, 0, 0.9)]
    """
    pairs = sorted(((float(iou[i, j]), i, j) for i, j in zip(*np.nonzero(iou >= threshold))), reverse=True)
    used_t, used_d, out = set(), set(), []
    for v, i, j in pairs:
        if i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
            out.append((i, j, v))
    return out
