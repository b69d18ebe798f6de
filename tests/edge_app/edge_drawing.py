"""Small bright-field frames drawn for the finder and app tests (cells with known outlines)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class DrawnCell:
    centre: tuple[int, int]
    axes: tuple[int, int]
    angle: float

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        cv2.ellipse(m, self.centre, self.axes, self.angle, 0, 360, 255, -1)
        return m

    def box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        ys, xs = np.nonzero(self.mask(shape))
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def draw_field(cells: list[DrawnCell], size: tuple[int, int] = (960, 1280), *, seed: int = 0,
               debris: bool = True, gradient: bool = True) -> np.ndarray:
    """A light field with stained cells (pink cytoplasm, dark nucleus), uneven light, noise and debris."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 235.0 - (18.0 * (xx / w) + 10.0 * (yy / h) if gradient else 0.0)
    img = np.dstack([light - 4, light, light + 2]).astype(np.float32)  # slightly warm background (BGR)
    for i, c in enumerate(cells):
        m = c.mask((h, w)) > 0
        tint = np.array([200, 160, 215] if i % 2 else [205, 185, 150], np.float32)  # pink or blue-green
        img[m] = 0.35 * img[m] + 0.65 * tint
        nucleus = np.zeros((h, w), np.uint8)
        cv2.ellipse(nucleus, c.centre, (max(3, c.axes[0] // 4), max(3, c.axes[1] // 4)), c.angle, 0, 360, 255, -1)
        img[nucleus > 0] = (110, 60, 80)
    if debris:
        for _ in range(12):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.circle(img, (x, y), int(rng.integers(1, 4)), (90, 80, 90), -1)
        cv2.line(img, (int(w * 0.05), int(h * 0.9)), (int(w * 0.45), int(h * 0.97)), (120, 110, 130), 2)
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def grid_cells(n: int, size: tuple[int, int] = (960, 1280), *, seed: int = 0, radius: tuple[int, int] = (35, 60),
               ) -> list[DrawnCell]:
    """``n`` separate cells on a jittered grid."""
    rng = np.random.default_rng(seed)
    h, w = size
    cols = int(np.ceil(np.sqrt(n * w / h)))
    rows = int(np.ceil(n / cols))
    cells = []
    for k in range(n):
        r, c = divmod(k, cols)
        cx = int((c + 0.5) * w / cols + rng.integers(-8, 9))
        cy = int((r + 0.5) * h / rows * 0.85 + rng.integers(-8, 9))
        a = int(rng.integers(*radius))
        cells.append(DrawnCell((cx, cy), (a, int(a * rng.uniform(0.7, 1.0))), float(rng.uniform(0, 180))))
    return cells


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
