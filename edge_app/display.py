"""Annotated frames: a box per cell coloured by clinical group, its label, and a status line.

``--show`` opens a window when there is a display (on Linux: ``$DISPLAY`` or
``$WAYLAND_DISPLAY``; Qt aborts the process without one, so it is checked first);
``--save-annotated`` writes every annotated frame as a JPEG under the store folder.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_bytes
from cytoedge.edge_app.classes import GROUP_COLOURS_BGR, UNKNOWN
from cytoedge.edge_app.preprocess import as_bgr_uint8

log = logging.getLogger(__name__)


def display_available() -> bool:
    """Can a window be opened here?"""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def status_line(frames_per_s: float, timings_ms: dict[str, float], n_cells: int, frame_no: int) -> str:
    """``frame 12 | 8.1 frames/s | find 12 ms | classify 35 ms | ... | 31 cells``

    >>> status_line(8.14, {"find": 12.3, "classify": 35.0}, 31, 12)
    'frame 12 | 8.1 frames/s | find 12 ms | classify 35 ms | 31 cells'
    """
    stages = " | ".join(f"{k} {v:.0f} ms" for k, v in timings_ms.items())
    return f"frame {frame_no} | {frames_per_s:.1f} frames/s | {stages} | {n_cells} cells"


def focus_bar(share: float, width: int = 10) -> str:
    """The focus score against the slide's threshold as a text bar: half full at the threshold.

    >>> focus_bar(1.0)
    'focus [#####|-----]'
    >>> focus_bar(0.4)
    'focus [##---|-----]'
    """
    half = width // 2
    n = max(0, min(width, round(share * half)))
    bar = "#" * n + "-" * (width - n)
    return f"focus [{bar[:half]}|{bar[half:]}]"


# the manual stage's states (edge_app.stage) in the annotated frame: BGR
STATE_COLOURS_BGR = {"moving": (0, 160, 255), "out of focus": (0, 0, 220), "settling": (200, 200, 0),
                     "counted": (0, 180, 0)}


def _draw_focus(img: np.ndarray, share: float, state: str, scale: float) -> None:
    """A focus bar with a tick at the threshold (the bar's middle) and the state, at the top left."""
    import cv2

    h, w = img.shape[:2]
    bw, bh, pad = max(60, w // 5), max(8, int(14 * scale)), max(4, int(8 * scale))
    x0, y0 = pad, pad
    colour = STATE_COLOURS_BGR.get(state, (200, 200, 200))
    cv2.rectangle(img, (x0 - 2, y0 - 2), (x0 + bw + 2, y0 + bh + 2), (32, 32, 32), -1)
    cv2.rectangle(img, (x0, y0), (x0 + int(bw * min(2.0, max(0.0, share)) / 2), y0 + bh), colour, -1)
    cv2.line(img, (x0 + bw // 2, y0 - 2), (x0 + bw // 2, y0 + bh + 2), (255, 255, 255), 1)
    text = f"focus {share:.2f} | {state}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, 1)
    ty = y0 + bh + pad + th
    cv2.rectangle(img, (x0 - 2, ty - th - 2), (x0 + tw + 4, ty + base + 2), (32, 32, 32), -1)
    cv2.putText(img, text, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, colour, 1, cv2.LINE_AA)


def annotate(frame: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], labels: Sequence[str],
             groups: Sequence[str], status: str = "", focus: tuple[float, str] | None = None) -> np.ndarray:
    """A copy of ``frame`` with each box drawn in its group's colour, its label, and ``status`` at the bottom;
    ``focus`` (manual stage: the focus score against its threshold, and the state) as a bar at the top left."""
    import cv2

    img = as_bgr_uint8(frame).copy()
    h, w = img.shape[:2]
    scale = max(0.4, w / 1600)
    thick = max(1, round(scale * 2))
    for (x, y, bw, bh), label, group in zip(boxes, labels, groups):
        colour = GROUP_COLOURS_BGR.get(group, GROUP_COLOURS_BGR[UNKNOWN])
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), colour, thick)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, 1)
        ty = y - 4 if y - th - base - 4 >= 0 else min(h - 1, y + bh + th + 4)
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), colour, -1)
        cv2.putText(img, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    if status:
        (tw, th), base = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, thick)
        top = h - th - base - 12  # a bar along the bottom edge
        cv2.rectangle(img, (0, top), (min(w, tw + 12), h), (32, 32, 32), -1)
        cv2.putText(img, status, (6, h - base - 6), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (255, 255, 255), thick,
                    cv2.LINE_AA)
    if focus is not None:
        _draw_focus(img, focus[0], focus[1], scale)
    return img


class Display:
    """Where annotated frames go: a window (``show``), JPEG files (``save_dir``), or nowhere."""

    WINDOW = "CytoEdge"

    def __init__(self, show: bool = False, save_dir: Path | None = None) -> None:
        self.window = show and display_available()
        if show and not self.window:
            log.warning("--show: no display here ($DISPLAY is not set); use --save-annotated to keep the frames")
        self.save_dir = save_dir
        self.saved = 0
        self.save_failed = False

    @property
    def active(self) -> bool:
        return self.window or (self.save_dir is not None and not self.save_failed)

    def update(self, annotated: np.ndarray, name: str) -> bool:
        """Show and/or save one frame; False when the user asked to quit (q or Esc in the window)."""
        if self.save_dir is not None and not self.save_failed:
            import cv2

            ok, jpg = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 90])
            try:
                if ok:
                    atomic_write_bytes(self.save_dir / f"{name}.jpg", jpg.tobytes())
                    self.saved += 1
            except OSError as exc:
                self.save_failed = True
                log.warning("annotated frames not saved any more (%s)", exc.strerror or exc)
        if self.window:
            import cv2

            cv2.imshow(self.WINDOW, annotated)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return False
        return True

    def close(self) -> None:
        if self.window:
            import cv2

            cv2.destroyAllWindows()
