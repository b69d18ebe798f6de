"""What the capture loop shares with the web view: the latest frame, its detections, frames/s.

One :class:`LiveState` per ``edge-app --web`` run, handed to both sides (no globals).
The capture loop calls :meth:`LiveState.on_frame` after each committed frame; that
only keeps a *reference* to the frame and its boxes (the loop never reuses a frame
array), so capture pays nothing for the web view. The drawing and the JPEG encoding
happen in the web request that asks for the frame (:meth:`LiveState.wait_frame`),
at the viewer's pace, once per frame however many viewers there are, on a copy
shrunk by a whole factor to at most ``preview_width``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cytoedge.edge_app.display import annotate


@dataclass(frozen=True)
class _Frame:
    image: np.ndarray
    boxes: tuple[tuple[int, int, int, int], ...]
    labels: tuple[str, ...]
    groups: tuple[str, ...]
    status: str
    focus: tuple[float, str] | None = None  # manual stage: (focus share, state) for the bar


class LiveState:
    """Thread-safe latest-frame state between the capture loop (writer) and web requests (readers)."""

    def __init__(self, preview_width: int = 1024, jpeg_quality: int = 75) -> None:
        if preview_width < 64 or not 10 <= jpeg_quality <= 100:
            raise ValueError("preview_width must be >= 64 and jpeg_quality in [10, 100]")
        self.preview_width = preview_width
        self.jpeg_quality = jpeg_quality
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._version = 0
        self._frame: _Frame | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self._info: dict[str, Any] = {"running": False, "slide": None, "frame": None, "frame_name": None,
                                      "frames_done": 0, "fps": 0.0, "status": "", "cells_in_frame": 0,
                                      "started": None, "ended": None, "stage": None}
        self.encoded = 0  # frames drawn + encoded (for the stream-cost benchmark)

    # -- the capture side -------------------------------------------------------------------------
    def start(self, slide: str) -> None:
        with self._cond:
            self._info.update(running=True, slide=slide, started=time.time(), ended=None)
            self._cond.notify_all()

    def publish(self, *, slide: str, frame_no: int | None, name: str, image: np.ndarray,
                boxes: Sequence[tuple[int, int, int, int]], labels: Sequence[str], groups: Sequence[str],
                status: str, fps: float, stage: dict[str, Any] | None = None, committed: bool = True) -> None:
        """A frame to show; ``committed``: it was recorded (a manual stage shows the frames between fields too,
        with ``stage``: their state and focus)."""
        focus = (float(stage["focus_share"]), str(stage["state"])) if stage else None
        frame = _Frame(image, tuple(tuple(map(int, b)) for b in boxes), tuple(labels), tuple(groups), status, focus)
        with self._cond:
            self._version += 1
            self._frame = frame
            self._info.update(running=True, slide=slide, frame_name=name, fps=round(float(fps), 2), status=status,
                              stage={k: v for k, v in stage.items() if k != "place"} if stage else None)
            if committed:
                self._info.update(frame=frame_no, cells_in_frame=len(frame.boxes),
                                  frames_done=self._info["frames_done"] + 1)
            self._cond.notify_all()

    def on_frame(self, info: dict[str, Any]) -> None:
        """The callback :func:`edge_app.app.run` calls with each committed frame."""
        cells = info["cells"]
        self.publish(slide=info["slide"], frame_no=info["seq"], name=info["name"], image=info["image"],
                     boxes=[c.box for c in cells], labels=info["labels"], groups=[c.group for c in cells],
                     status=info["status"], fps=info["fps"], stage=info.get("stage"),
                     committed=info.get("committed", True))

    def finish(self, reason: str) -> None:
        with self._cond:
            self._info.update(running=False, ended=reason)
            self._cond.notify_all()

    # -- the web side -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {**self._info, "version": self._version}

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def wait_frame(self, after: int = 0, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """(version, JPEG) of the latest frame once it is newer than ``after``; None if none comes in ``timeout`` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > after and self._frame is not None, timeout=timeout)
            if self._frame is None or self._version <= after:
                return None
        with self._encode_lock:  # one encoding per frame, however many viewers ask for it
            with self._cond:  # the newest frame by now: a viewer that waited here never re-encodes an older one
                version, frame = self._version, self._frame
            if self._jpeg is None or self._jpeg[0] < version:
                self._jpeg = (version, self._encode(frame))
                self.encoded += 1
            return self._jpeg

    def _encode(self, f: _Frame) -> bytes:
        import cv2

        img, boxes = f.image, f.boxes
        h, w = img.shape[:2]
        k = -(-w // self.preview_width)  # shrink by a whole factor: INTER_AREA's fast path (2028 px: 4 ms, not 39)
        if k > 1:
            s = 1.0 / k
            img = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
            boxes = tuple((round(x * s), round(y * s), max(1, round(bw * s)), max(1, round(bh * s)))
                          for x, y, bw, bh in boxes)
        ann = annotate(img, boxes, f.labels, f.groups, f.status, focus=f.focus)
        ok, jpg = cv2.imencode(".jpg", ann, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return jpg.tobytes()
