"""A manual stage (``--stage manual``): where the view is on the slide, whether it is still and sharp,
and which of a field's cells were counted before.

An operator moves the stage and turns the focus by hand; the camera goes on delivering frames.
Every frame is reduced to the finder's work width (:func:`edge_app.finder.shrink`) and turned grey:

* **motion**: the global shift against the previous frame, by phase correlation
  (``cv2.phaseCorrelate`` with a Hann window, on the work image halved once more: ~1 ms); the
  shifts add up to the view's position in slide coordinates, which are full-resolution pixels of
  the first frame (x right, y down).
* **focus**: the variance of the Laplacian of the work image after a light Gaussian blur (which
  takes the sensor noise out before the second derivative amplifies it), per unit of the image's
  structure (:func:`focus_score`), so a sparse field is not taken for a blurred one.
* **settled**: the view has been still (under ``still_px`` per frame) for ``settle_frames``
  frames and its focus is at least ``focus_rel`` of the sharpest frame seen so far and at least
  ``focus_floor``. The sharpest frame of the next ``pick_frames`` settled frames is the field: it is
  classified once. The rest of that rest shows "counted"; frames in motion or out of focus are
  neither classified nor counted.

Drift. Adding up frame-to-frame shifts lets the position error grow with every frame. It is
bounded at each field: a field's position is re-measured by phase correlation against the earlier
counted field it overlaps most (``keyframes``), and the running position is reset to that. A
field's error is then that of the chain of overlapping fields back to one seen before, not of the
frames in between, and a field the operator comes back to is registered directly against the
first view of it. Fields with no overlap with any earlier one keep the frame-to-frame estimate
(the moves between them add their error).

A cell is counted once: its box in slide coordinates is compared with the boxes of every cell
counted before (a grid index); one that covers a counted one by ``same_cell`` of the smaller box
is that cell, seen again (in a region seen before, or in the overlap of two neighbouring fields).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cytoedge.edge_app.finder import shrink

MOVING, OUT_OF_FOCUS, SETTLING, COUNTED = "moving", "out of focus", "settling", "counted"
STATES = (MOVING, OUT_OF_FOCUS, SETTLING, COUNTED)


@dataclass(frozen=True)
class StageConfig:
    still_px: float = 3.0  # a view moving less than this (full-resolution px per frame) is still
    settle_frames: int = 2  # still frames in a row before the view is at rest
    pick_frames: int = 3  # the sharpest of this many settled frames is the field (fewer if the rest ends first)
    focus_rel: float = 0.75  # in focus: a score at least this share of the sharpest frame seen so far ...
    focus_floor: float = 3.0  # ... and at least this (edge_app.stage.focus_score)
    same_cell: float = 0.5  # a cell covering a counted one by this share of the smaller box is that cell
    min_response: float = 0.05  # phase-correlation peaks under this are no measurement (featureless view)
    register_overlap: float = 0.1  # re-register a field against an earlier one it overlaps by this share
    max_correction: float = 0.1  # ... and accept a correction up to this share of the frame's side
    work_width: int = 640  # frames wider than this are tracked and scored at this width (the finder's)

    def __post_init__(self) -> None:
        if not self.still_px > 0 or self.settle_frames < 1 or self.pick_frames < 1:
            raise ValueError("stage: still_px must be > 0, settle_frames and pick_frames >= 1")
        if not 0 <= self.focus_rel <= 1 or self.focus_floor < 0:
            raise ValueError(f"stage: focus_rel must be in [0, 1] and focus_floor >= 0, got {self.focus_rel}, "
                             f"{self.focus_floor}")
        if not 0 < self.same_cell <= 1:
            raise ValueError(f"stage: same_cell must be in (0, 1], got {self.same_cell}")


def work_grey(image: np.ndarray, width: int) -> np.ndarray:
    """The frame shrunk to ``width`` (the finder's way) and turned grey, uint8."""
    import cv2

    small = shrink(image, width)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small


def focus_score(grey: np.ndarray) -> float:
    """Sharpness that does not grow with the number of cells in view: the variance of the Laplacian
    (after a 3x3 Gaussian that takes out the sensor noise) per unit of the image's structure (the
    variance left after removing its smooth part, the image at 1/16 size enlarged back; plus 25 grey levels^2, so a
    near-empty view does not read as sharp), times 100. Higher is sharper; 0 for a flat image.

    A defocus of 1-2 px takes a third of it away, whatever the field holds; the raw variance of
    the Laplacian would also halve between a field of 20 cells and one of 10.

    >>> focus_score(np.full((64, 64), 128, np.uint8))
    0.0
    """
    import cv2

    g = cv2.GaussianBlur(grey, (3, 3), 0)
    lap = cv2.Laplacian(g, cv2.CV_32F)
    f = g.astype(np.float32)
    h, w = f.shape[:2]
    smooth = cv2.resize(cv2.resize(f, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_LINEAR)  # the smooth part, cheaply (a blur of sigma 8 costs 15 ms)
    band = cv2.subtract(f, smooth)
    return float(100.0 * cv2.meanStdDev(lap)[1][0, 0] ** 2 / (cv2.meanStdDev(band)[1][0, 0] ** 2 + 25.0))


class _Tracker:
    """Frame-to-frame shift by phase correlation on a half-size copy of the work image.

    Two measurements, the one with the stronger correlation peak wins: the whole images, and the
    overlap the previous frame's motion predicts (a fast move shifts the view by a third of the
    frame between two frames, where a plain correlation of the whole images loses its peak).
    """

    def __init__(self) -> None:
        self.prev: np.ndarray | None = None
        self.window: np.ndarray | None = None
        self.velocity = (0.0, 0.0)  # the last shift, half-size px (view motion)

    def shift(self, grey: np.ndarray) -> tuple[float, float, float]:
        """(dx, dy, response) of the view's motion since the previous frame, in work-image pixels.

        The content moves opposite to the view: a stage moving the view right slides the picture left.
        """
        import cv2

        half = cv2.pyrDown(grey).astype(np.float32)
        prev, self.prev = self.prev, half
        if prev is None or prev.shape != half.shape:
            self.velocity = (0.0, 0.0)
            return 0.0, 0.0, 1.0
        if self.window is None or self.window.shape != half.shape:
            self.window = cv2.createHanningWindow((half.shape[1], half.shape[0]), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(prev, half, self.window)
        best = (-dx, -dy, float(response))
        vx, vy = self.velocity
        if abs(vx) + abs(vy) >= 4:  # moving: also look where the motion so far says the view went
            got = register(prev, (0.0, 0.0), half, (vx, vy), 0.0)
            # the two answers judged alike: how well the frames agree where each says they overlap
            if got is not None and _agreement(prev, half, got[:2]) > _agreement(prev, half, best[:2]):
                best = (got[0], got[1], max(got[2], best[2]))
        self.velocity = (best[0], best[1]) if best[2] >= 0.05 else (0.0, 0.0)
        return 2.0 * best[0], 2.0 * best[1], best[2]


def _agreement(a: np.ndarray, b: np.ndarray, shift: tuple[float, float]) -> float:
    """Normalised correlation of ``a`` and ``b`` over their overlap when ``b``'s origin lies at ``shift`` in ``a``."""
    h, w = a.shape[:2]
    ix, iy = int(round(shift[0])), int(round(shift[1]))
    x0, y0, x1, y1 = max(0, ix), max(0, iy), min(w, ix + w), min(h, iy + h)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return -1.0
    p = a[y0:y1, x0:x1].ravel() - a[y0:y1, x0:x1].mean()
    q = b[y0 - iy:y1 - iy, x0 - ix:x1 - ix].ravel() - b[y0 - iy:y1 - iy, x0 - ix:x1 - ix].mean()
    d = float(np.sqrt((p @ p) * (q @ q)))
    return float(p @ q) / d if d > 0 else -1.0


def register(ref: np.ndarray, ref_pos: tuple[float, float], img: np.ndarray, pos: tuple[float, float],
             min_response: float) -> tuple[float, float, float] | None:
    """``img``'s position measured against ``ref`` (both work images, positions in work pixels), from the
    overlap that the predicted positions give: (x, y, response), or None without enough overlap or peak."""
    import cv2

    h, w = img.shape[:2]
    dx, dy = pos[0] - ref_pos[0], pos[1] - ref_pos[1]  # img's origin in ref's pixels
    ix, iy = int(round(dx)), int(round(dy))
    x0, y0, x1, y1 = max(0, ix), max(0, iy), min(w, ix + w), min(h, iy + h)
    if x1 - x0 < 32 or y1 - y0 < 32:
        return None
    a = ref[y0:y1, x0:x1].astype(np.float32)
    b = img[y0 - iy:y1 - iy, x0 - ix:x1 - ix].astype(np.float32)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (sx, sy), response = cv2.phaseCorrelate(a, b, win)
    if response < min_response:
        return None
    return ref_pos[0] + ix - sx, ref_pos[1] + iy - sy, float(response)


@dataclass
class StageView:
    """What the stage tracker says about one frame."""

    index: int  # the frame's index in this run
    x: float  # the view's top-left corner in slide coordinates (full-resolution px of the first frame)
    y: float
    focus: float
    threshold: float  # the focus this frame needed
    moved: float  # full-resolution px since the previous frame
    state: str  # moving / out of focus / settling / counted

    @property
    def focus_share(self) -> float:
        """Focus against the threshold, for the bar: 1.0 = just sharp enough, capped at 2."""
        return min(2.0, self.focus / self.threshold) if self.threshold > 0 else 2.0


@dataclass
class Field:
    """A settled field to classify: its sharpest frame and where it lies on the slide."""

    frame: object  # the source's Frame of the sharpest frame of the rest
    image: np.ndarray  # that frame, BGR uint8
    view: StageView
    registered: bool = False  # re-measured against an earlier field (drift reset)
    seq_in_rest: int = 0


@dataclass
class _Rest:
    still: int = 0  # still frames in a row
    settled: int = 0  # settled frames seen in this rest
    best: tuple[float, object, np.ndarray, StageView, np.ndarray] | None = None  # focus, frame, image, view, grey
    counted: bool = False
    origin: tuple[float, float] | None = None  # where the counted field lies (a slow creep ends the rest)


class StageTracker:
    """Feed every frame to :meth:`update`; it returns the frame's :class:`StageView` and, when a rest has
    given its field, that :class:`Field` (at most once per rest). :meth:`finish` gives the last one."""

    def __init__(self, cfg: StageConfig | None = None) -> None:
        self.cfg = cfg or StageConfig()
        self._tracker = _Tracker()
        self.x = self.y = 0.0  # full-resolution px
        self.scale = 1.0  # full-resolution px per work px
        self.sharpest = 0.0
        self.frames = 0
        self._rest = _Rest()
        self.keyframes: list[tuple[float, float, np.ndarray]] = []  # (x, y full res, work grey) of counted fields
        self.size: tuple[int, int] | None = None  # the frame size (full res)
        self.states: dict[str, int] = dict.fromkeys(STATES, 0)
        self.registered = 0

    def threshold(self) -> float:
        return max(self.cfg.focus_floor, self.cfg.focus_rel * self.sharpest)

    def update(self, frame: object, image: np.ndarray) -> tuple[StageView, Field | None]:
        cfg = self.cfg
        H, W = image.shape[:2]
        grey = work_grey(image, cfg.work_width)
        if self.size != (W, H):  # a new frame size (the first frame, or a camera reopened at another mode)
            self.size, self._tracker = (W, H), _Tracker()
        self.scale = W / grey.shape[1]
        dx, dy, response = self._tracker.shift(grey)
        if response < cfg.min_response:
            dx = dy = 0.0  # nothing to measure (an empty, flat or very blurred view): no move seen
        dx, dy = dx * self.scale, dy * self.scale
        self.x, self.y = self.x + dx, self.y + dy
        moved = math.hypot(dx, dy)
        focus = focus_score(grey)
        self.sharpest = max(self.sharpest, focus)
        need = self.threshold()
        rest = self._rest
        done: Field | None = None
        creep = rest.origin is not None and max(abs(self.x - rest.origin[0]) / W, abs(self.y - rest.origin[1]) / H) > 0.25
        if moved > cfg.still_px or creep:
            done = self._close_rest()
            rest = self._rest
            state = MOVING
        else:
            rest.still += 1
            if rest.counted:
                state = COUNTED
            elif rest.still < cfg.settle_frames:
                state = MOVING
            elif focus < need:
                state = OUT_OF_FOCUS
            else:
                state = SETTLING
        view = StageView(self.frames, self.x, self.y, focus, need, moved, state)
        if state == SETTLING:
            rest.settled += 1
            if rest.best is None or focus > rest.best[0]:
                rest.best = (focus, frame, image, view, grey)
            if rest.settled >= cfg.pick_frames:
                done = self._take(rest)
        self.frames += 1
        self.states[view.state] += 1
        return view, done

    def finish(self) -> Field | None:
        """The field of the rest in progress when the source ends (if it settled but was not taken yet)."""
        return self._close_rest()

    def _close_rest(self) -> Field | None:
        rest, self._rest = self._rest, _Rest()
        if rest.best is not None and not rest.counted:
            return self._take(rest)
        return None

    def _take(self, rest: _Rest) -> Field:
        assert rest.best is not None
        focus, frame, image, view, grey = rest.best
        rest.counted = True
        # the best frame's position, moved by what the view crept since: re-register, then carry the correction
        fx, fy, registered = view.x, view.y, False
        best = self._best_keyframe(fx, fy)
        if best is not None:
            kx, ky, kgrey = best
            s = self.scale
            got = register(kgrey, (kx / s, ky / s), grey, (fx / s, fy / s), self.cfg.min_response)
            if got is not None:
                nx, ny = got[0] * s, got[1] * s
                W, H = self.size or (1, 1)
                if max(abs(nx - fx) / W, abs(ny - fy) / H) <= self.cfg.max_correction:
                    self.x, self.y = self.x + nx - fx, self.y + ny - fy
                    fx, fy, registered = nx, ny, True
                    self.registered += 1
        view.x, view.y = fx, fy
        rest.origin = (self.x, self.y)
        rest.best = None
        self.keyframes.append((fx, fy, grey))
        return Field(frame, image, view, registered)

    def _best_keyframe(self, x: float, y: float) -> tuple[float, float, np.ndarray] | None:
        """The counted field this view overlaps most (at least ``register_overlap`` of the frame), or None."""
        W, H = self.size or (1, 1)
        best, share = None, self.cfg.register_overlap
        for kx, ky, kgrey in self.keyframes:
            ow, oh = W - abs(kx - x), H - abs(ky - y)
            if ow > 0 and oh > 0 and ow * oh / (W * H) >= share:
                best, share = (kx, ky, kgrey), ow * oh / (W * H)
        return best


@dataclass
class CountedCells:
    """Boxes (slide coordinates) of every counted cell, in a grid index, to tell a new cell from one seen before."""

    same_cell: float = 0.5
    grid: int = 256
    _cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = field(default_factory=dict)
    n: int = 0

    def _keys(self, x: float, y: float, w: float, h: float) -> list[tuple[int, int]]:
        g = self.grid
        return [(i, j) for i in range(int(x // g), int((x + w) // g) + 1) for j in range(int(y // g), int((y + h) // g) + 1)]

    def seen(self, box: tuple[float, float, float, float]) -> bool:
        """Does ``box`` cover a counted cell by ``same_cell`` of the smaller of the two boxes?"""
        x, y, w, h = box
        for key in self._keys(x, y, w, h):
            for cx, cy, cw, ch in self._cells.get(key, ()):
                iw = min(x + w, cx + cw) - max(x, cx)
                ih = min(y + h, cy + ch) - max(y, cy)
                if iw > 0 and ih > 0 and iw * ih >= self.same_cell * min(w * h, cw * ch):
                    return True
        return False

    def add(self, box: tuple[float, float, float, float]) -> None:
        for key in self._keys(*box):
            self._cells.setdefault(key, []).append(tuple(map(float, box)))
        self.n += 1

    def new_ones(self, boxes: Sequence[tuple[float, float, float, float]]) -> list[int]:
        """Indices of the boxes not seen before (they are added, so two boxes of one field on one cell count once)."""
        fresh = []
        for i, b in enumerate(boxes):
            if not self.seen(b):
                self.add(b)
                fresh.append(i)
        return fresh


def coverage_mask(fields: Sequence[tuple[float, float, int, int]], scale: float = 1 / 16) -> tuple[np.ndarray, float, float]:
    """The union of the fields' rectangles (x, y, w, h in slide px) rasterised at ``scale``: (mask, x0, y0),
    the mask's pixel (0, 0) lying at slide (x0, y0). Empty input: a 1x1 empty mask."""
    if not fields:
        return np.zeros((1, 1), np.uint8), 0.0, 0.0
    x0 = min(f[0] for f in fields)
    y0 = min(f[1] for f in fields)
    x1 = max(f[0] + f[2] for f in fields)
    y1 = max(f[1] + f[3] for f in fields)
    mask = np.zeros((max(1, math.ceil((y1 - y0) * scale)), max(1, math.ceil((x1 - x0) * scale))), np.uint8)
    for x, y, w, h in fields:
        a, b = int(round((x - x0) * scale)), int(round((y - y0) * scale))
        mask[b:b + max(1, int(round(h * scale))), a:a + max(1, int(round(w * scale)))] = 1
    return mask, x0, y0


def coverage_area(fields: Sequence[tuple[float, float, int, int]], scale: float = 1 / 8) -> float:
    """Area of the union of the fields, in slide px^2 (rasterised at ``scale``)."""
    mask, _, _ = coverage_mask(fields, scale)
    return float(mask.sum()) / (scale * scale)


__all__ = ["COUNTED", "MOVING", "OUT_OF_FOCUS", "SETTLING", "STATES", "CountedCells", "Field", "StageConfig",
           "StageTracker", "StageView", "coverage_area", "coverage_mask", "focus_score", "register", "work_grey"]
