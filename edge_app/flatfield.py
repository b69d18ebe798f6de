"""Flat-field correction: the illumination field of an empty slide area (vignetting, colour cast), measured
once by ``edge-app calibrate`` and divided out of every frame before the finder.

The field is the mean of the calibration frames, smoothed (dust and noise out); the gain per pixel
and channel brings it to one neutral grey (the mean of its brightest channel's 99th percentile),
so a corrected frame has an even, colourless background. It is stored small (1/8 size, ``.npz``
without pickle) with the board and camera it was measured on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_bytes
from cytoedge.edge_app.errors import CytoEdgeError

SHRINK = 8  # the stored gain is this much smaller than the frame
MAX_STRUCTURE = 0.06  # an empty area varies less than this (relative) around its smooth field


@dataclass
class FlatField:
    gain: np.ndarray  # H/8 x W/8 x 3 float32: multiply a frame by this (enlarged) to flatten it
    meta: dict[str, Any]
    _full: tuple[tuple[int, int], np.ndarray] | None = None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame (BGR uint8) with the illumination field divided out."""
        import cv2

        h, w = image.shape[:2]
        if self._full is None or self._full[0] != (w, h):
            self._full = ((w, h), cv2.resize(self.gain, (w, h), interpolation=cv2.INTER_LINEAR))
        return cv2.multiply(image, self._full[1], dtype=cv2.CV_8U, scale=1.0) if image.dtype == np.uint8 else \
            np.clip(image * self._full[1], 0, 255).astype(np.uint8)

    def save(self, path: Path) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, gain=self.gain.astype(np.float32), meta=np.array(json.dumps(self.meta)))
        atomic_write_bytes(path, buf.getvalue())


def measure(frames: list[np.ndarray], meta: dict[str, Any]) -> FlatField:
    """The flat field of ``frames`` (an empty slide area); refuses frames that hold cells or debris."""
    import cv2

    if not frames:
        raise CytoEdgeError("calibrate: no frames to measure the illumination from")
    mean = np.mean([f.astype(np.float32) for f in frames], axis=0)
    h, w = mean.shape[:2]
    small = cv2.resize(mean, (max(1, w // SHRINK), max(1, h // SHRINK)), interpolation=cv2.INTER_AREA)
    smooth = cv2.GaussianBlur(small, (0, 0), max(1.0, small.shape[1] / 40))
    structure = float(np.percentile(np.abs(small - smooth) / np.maximum(smooth, 1.0), 99.5))
    if structure > MAX_STRUCTURE:
        raise CytoEdgeError(f"calibrate: the view is not empty ({structure:.0%} local contrast, at most "
                            f"{MAX_STRUCTURE:.0%}): move to an area of the slide without cells or debris and try again")
    target = float(np.percentile(smooth.max(axis=2), 99))
    if target < 20:
        raise CytoEdgeError("calibrate: the view is dark: switch the lamp on and open the diaphragm")
    gain = (target / np.maximum(smooth, 1.0)).astype(np.float32)
    return FlatField(gain, {**meta, "frames": len(frames), "size": [w, h], "target": round(target, 1),
                            "vignetting": round(float(1 - smooth.mean(axis=2).min() / smooth.mean(axis=2).max()), 3)})


def load(path: Path) -> FlatField:
    try:
        with np.load(path, allow_pickle=False) as z:
            gain, meta = z["gain"].astype(np.float32), json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise CytoEdgeError(f"cannot read the flat field {path} ({exc}): run 'edge-app calibrate' again") from None
    if gain.ndim != 3 or gain.shape[2] != 3 or not np.all(np.isfinite(gain)) or gain.min() <= 0:
        raise CytoEdgeError(f"flat field {path} is damaged: run 'edge-app calibrate' again")
    return FlatField(gain, meta)


__all__ = ["FlatField", "load", "measure"]
