"""A simulated operator at a manual microscope: a camera window moving over one large synthetic slide.

No camera exists on the machines this project is built on, so the operator is made: one large
field written by :func:`train.data.synth.write_slide` (``frame_size`` = the whole slide, with its
``truth.json``), and a camera window (``window``, e.g. 1280x960) that rests on a path of fields and
moves between them:

* **rests** of ``rest_s`` seconds on each field (the window holds still; sensor noise changes
  every frame);
* **moves** of ``move_s`` seconds between fields (smooth start and stop), with motion blur along
  the move in proportion to the speed (``exposure`` of the frame interval);
* **focus** drifting out and back: on every ``focus_every``-th rest the first ``focus_s`` seconds
  are out of focus (a Gaussian defocus of up to ``defocus`` px, easing back to sharp), and moves are
  slightly defocused (``move_defocus``), as an operator refocusing after each move;
* optional **vignetting** (``vignette``: the corners this much darker) and a colour cast, fixed to
  the camera, for the flat-field calibration.

Every frame carries its truth (:class:`FrameTruth`: the window's position, whether it moves,
its defocus), so a benchmark can tell which frames a device should have counted. A path may pass
over the same fields twice (``revisit``). Frames come from :class:`OperatorSource`, a
:class:`edge_app.sources.FrameSource` (at camera pace with ``pace=True``), or as a video file
(:func:`write_video`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoedge.edge_app.sources import Frame, FrameSource


@dataclass(frozen=True)
class Operator:
    rest_s: float = 2.0  # seconds resting on each field
    move_s: float = 0.8  # seconds per move to the next field (longer moves take longer in proportion)
    fps: float = 10.0  # camera frames per second
    window: tuple[int, int] = (1280, 960)  # the camera's frame (width, height)
    step: float = 0.8  # neighbouring fields are this share of the window apart (0.8: 20 % overlap)
    cols: int = 4  # fields per row of the serpentine path
    rows: int = 3
    origin: tuple[int, int] = (400, 300)  # the first field's top-left corner on the slide
    revisit: bool = False  # after the path, go back over its first row again
    noise: float = 3.0  # sensor noise, standard deviation in grey levels
    exposure: float = 0.5  # share of the frame interval the shutter is open (motion blur length)
    focus_every: int = 3  # every n-th rest starts out of focus ...
    focus_s: float = 0.5  # ... for this long, easing back to sharp
    defocus: float = 6.0  # the largest defocus (Gaussian sigma, px)
    move_defocus: float = 1.5  # defocus while moving
    vignette: float = 0.0  # corners this much darker (0.2: 20 %)
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # gain per channel (B, G, R): a colour cast
    seed: int = 0

    def path(self) -> list[tuple[int, int]]:
        """The fields' top-left corners, in the order the operator visits them (a serpentine)."""
        w, h = self.window
        pts = []
        for r in range(self.rows):
            cols = range(self.cols) if r % 2 == 0 else range(self.cols - 1, -1, -1)
            pts += [(self.origin[0] + round(c * self.step * w), self.origin[1] + round(r * self.step * h)) for c in cols]
        if self.revisit:
            first_row = pts[:self.cols]
            pts += first_row[::-1]  # back along the first row (the last field of it first)
        return pts


@dataclass(frozen=True)
class FrameTruth:
    index: int
    x: int  # the window's top-left corner on the slide
    y: int
    moving: bool  # the window moved since the previous frame
    defocus: float  # Gaussian sigma of the defocus, px (0: sharp)
    rest: int  # the rest this frame belongs to (-1 while moving)

    @property
    def in_focus(self) -> bool:
        return self.defocus <= 1.0


def plan_frames(op: Operator) -> list[FrameTruth]:
    """Every frame of the operator's session: rests and moves along :meth:`Operator.path`."""
    out: list[FrameTruth] = []
    pts = op.path()
    n_rest = max(1, round(op.rest_s * op.fps))
    n_focus = round(op.focus_s * op.fps)
    for k, (x, y) in enumerate(pts):
        blurred = k % op.focus_every == op.focus_every - 1 if op.focus_every > 0 else False
        for i in range(n_rest):
            d = op.defocus * max(0.0, 1 - i / n_focus) if blurred and n_focus else 0.0
            out.append(FrameTruth(len(out), x, y, False, d, k))
        if k + 1 < len(pts):
            nx, ny = pts[k + 1]
            hop = max(1.0, max(abs(nx - x) / (op.step * op.window[0]), abs(ny - y) / (op.step * op.window[1])))
            n_move = max(1, round(op.move_s * op.fps * hop))
            for i in range(1, n_move + 1):
                t = i / n_move
                s = t * t * (3 - 2 * t)  # smoothstep: the stage starts and stops gently
                out.append(FrameTruth(len(out), round(x + s * (nx - x)), round(y + s * (ny - y)), True,
                                      op.move_defocus, -1))
    return out


def _vignette(size: tuple[int, int], strength: float, cast: tuple[float, float, float]) -> np.ndarray:
    """Per-pixel gain (H x W x 3, float32): 1 at the centre, 1 - strength in the corners, times the cast."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    gain = 1 - strength * r2 / 2
    return gain[:, :, None] * np.asarray(cast, np.float32)[None, None, :]


def render_frame(slide: np.ndarray, t: FrameTruth, prev: FrameTruth | None, op: Operator,
                 rng: np.random.Generator, gain: np.ndarray | None = None) -> np.ndarray:
    """The camera's frame for ``t``: the window cut from the slide, motion blur, defocus, gain, noise."""
    import cv2

    w, h = op.window
    img = slide[t.y:t.y + h, t.x:t.x + w]
    if t.moving and prev is not None:
        dx, dy = (t.x - prev.x) * op.exposure, (t.y - prev.y) * op.exposure
        n = int(math.ceil(math.hypot(dx, dy)))
        if n >= 2:  # a line kernel along the motion
            k = np.zeros((2 * n + 1, 2 * n + 1), np.float32)
            cv2.line(k, (n - round(dx / 2), n - round(dy / 2)), (n + round(dx / 2), n + round(dy / 2)), 1.0, 1)
            img = cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
    if t.defocus > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), t.defocus)
    out = img.astype(np.float32) if gain is not None or op.noise > 0 else img
    if gain is not None:
        out = out * gain
    if op.noise > 0:
        noise = np.empty(out.shape, np.float32)
        cv2.randn(noise, 0.0, float(op.noise))
        cv2.setRNGSeed(int(rng.integers(1 << 30)))
        out = out + noise
    return np.clip(out, 0, 255).astype(np.uint8) if out.dtype != np.uint8 else np.ascontiguousarray(out)


def load_slide(folder: Path) -> np.ndarray:
    """The slide image written by ``write_slide(..., frame_size=SLIDE)`` (its single field)."""
    import cv2

    image = cv2.imread(str(folder / "field_001.png"), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"no slide image {folder / 'field_001.png'}")
    return image


class OperatorSource(FrameSource):
    """The operator's frames as a frame source; ``pace``: deliver them at the camera's rate; ``live``: say so
    (the app then picks ``--stage manual`` itself, as for a camera)."""

    def __init__(self, slide: np.ndarray, op: Operator, *, pace: bool = False, live: bool = False,
                 plan: list[FrameTruth] | None = None) -> None:
        super().__init__()
        self.slide, self.op, self.pace = slide, op, pace
        self.live = live
        self.plan = plan if plan is not None else plan_frames(op)
        self.description = f"simulated operator ({len(self.plan)} frames)"
        w, h = op.window
        for t in self.plan:
            if t.x < 0 or t.y < 0 or t.x + w > slide.shape[1] or t.y + h > slide.shape[0]:
                raise ValueError(f"the operator's path leaves the slide at frame {t.index} ({t.x}, {t.y})")
        self.gain = _vignette(op.window, op.vignette, op.cast) if op.vignette or op.cast != (1.0, 1.0, 1.0) else None

    def frames(self) -> Iterator[Frame]:
        import cv2

        cv2.setRNGSeed(self.op.seed)
        rng = np.random.default_rng(self.op.seed)
        prev, t0 = None, time.perf_counter()
        for t in self.plan:
            if self._stop.is_set():
                return
            if self.pace:
                self._stop.wait(max(0.0, t0 + t.index / self.op.fps - time.perf_counter()))
            image = render_frame(self.slide, t, prev, self.op, rng, self.gain)
            prev = t
            self.stats["frames"] += 1
            yield Frame(image, t.index, f"sim#{t.index}")


def write_video(path: Path, slide: np.ndarray, op: Operator) -> list[FrameTruth]:
    """The operator's frames as an MJPG ``.avi`` (lossy, as a camera's stream); the frames' truth."""
    import cv2

    src = OperatorSource(slide, op)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), op.fps, op.window)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for f in src:
            writer.write(f.image)
    finally:
        writer.release()
    return src.plan


__all__ = ["FrameTruth", "Operator", "OperatorSource", "load_slide", "plan_frames", "render_frame", "write_video"]
