"""The cell finder: whole cells (cytoplasm) on bright-field Pap frames, with OpenCV only.

Steps: shrink the frame to ``work_width`` (a 4K frame is found at 640 px wide;
:func:`shrink`) ->
estimate the background (the slide's uneven illumination) at 1/8 of that and take
each pixel's absorbance against it (its largest drop over the three channels) ->
hysteresis threshold (regions above the background noise that hold a part above
Otsu's threshold),
open/close, fill holes -> distance transform, one marker per peak (two peaks join
when the distance map has no neck between them) -> a clump with several markers is
divided between them along the power diagram of their inscribed circles (a
watershed on the distance map whose boundary between two overlapping discs is the
line through their intersection points; OpenCV's own ``cv2.watershed`` floods by
intensity gradient, which is flat on a distance map) -> filter by area (fraction of
the frame) and shape (solidity, elongation) -> boxes and outlines scaled back to full
resolution, and a square crop with a margin cut from the full-resolution frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoedge.edge_app.preprocess import as_bgr_uint8


@dataclass(frozen=True)
class FinderConfig:
    work_width: int = 640  # frames wider than this are found at this width (crops stay full resolution)
    min_area: float = 0.0008  # smallest cell, as a fraction of the frame area (1280x960: ~980 px, ~35 px wide)
    max_area: float = 0.08  # largest cell, fraction of the frame area (1280x960: ~98 000 px, ~350 px wide)
    min_solidity: float = 0.75  # area / convex-hull area: rejects ragged debris and unsplit clumps
    max_elongation: float = 4.0  # long side / short side of the rotated box: rejects fibres
    min_contrast: float = 8.0  # floor of the foreground threshold (absorbance, 0-255), so an empty field stays empty
    noise_k: float = 4.0  # low hysteresis threshold: background level + this many robust standard deviations
    split: bool = True  # separate touching cells (distance transform + watershed)
    neck: float = 0.90  # two peaks are two cells when the distance map dips below this share of the lower one
    background: float = 0.3  # the background estimate removes stained objects up to this share of the frame width
    margin: float = 0.15  # crop margin on each side, as a share of the box's longer side

    def __post_init__(self) -> None:
        if not 0 < self.min_area < self.max_area <= 1:
            raise ValueError(f"finder needs 0 < min_area < max_area <= 1, got {self.min_area}, {self.max_area}")
        if self.work_width < 64:
            raise ValueError(f"finder work_width must be >= 64, got {self.work_width}")


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h of the cell at full resolution
    crop_box: tuple[int, int, int]  # x, y, side of the square crop (may reach past the frame: padded)
    area: float  # cell area in full-resolution pixels
    solidity: float
    elongation: float
    contour: np.ndarray  # N x 2 int32 outline at full resolution
    touches_edge: bool  # the cell is cut by the frame border


def _background(small: np.ndarray, cell_px: int) -> np.ndarray:
    """The slide's empty background colour under each pixel (uneven illumination kept, cells removed).

    Stained matter only absorbs light, so per colour channel the background is the
    bright envelope: a grey closing (removes darker objects up to ~``cell_px`` wide)
    at 1/8 scale, smoothed and enlarged back.
    """
    import cv2

    h, w = small.shape[:2]
    sw, sh = max(8, w // 8), max(8, h // 8)
    k = max(3, (cell_px // 8) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    bg = cv2.morphologyEx(cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA), cv2.MORPH_CLOSE, kernel)
    bg = cv2.blur(bg, (k, k))
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def foreground_mask(small: np.ndarray, cfg: FinderConfig, cell_px: int) -> np.ndarray:
    """uint8 0/255 mask of stained matter: pixels that absorb light in some channel against the background.

    Hysteresis on the absorbance: Otsu's threshold finds the clearly stained parts
    (nuclei, dense cytoplasm); every region above a low threshold (the background's
    level + ``noise_k`` robust standard deviations, never under ``min_contrast``) that
    holds such a part is kept whole, so pale cytoplasm around a dark nucleus stays.
    """
    import cv2

    drop = cv2.subtract(_background(small, cell_px), small)
    absorb = cv2.max(cv2.max(drop[:, :, 0], drop[:, :, 1]), drop[:, :, 2])
    score = cv2.GaussianBlur(absorb, (5, 5), 0)
    otsu, _ = cv2.threshold(score, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    high = max(otsu, cfg.min_contrast)
    level, spread = _robust_level(np.bincount(score.ravel(), minlength=256)[:max(1, int(otsu))])
    low = min(high, max(cfg.min_contrast, level + cfg.noise_k * max(spread, 1.0)))
    weak = (score > low).astype(np.uint8)
    weak = cv2.morphologyEx(weak, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.zeros(n, np.uint8)
    keep[np.bincount(labels[score > high], minlength=n) > 0] = 255
    keep[0] = 0
    mask = keep[labels]
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)  # fill pale holes inside cells
    return filled


def _robust_level(hist: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 x MAD) of values given as a histogram of 0..len-1.

    >>> _robust_level(np.array([0, 3, 2, 3, 0]))
    (2.0, 1.4826)
    """
    total = hist.sum()
    if total == 0:
        return 0.0, 0.0
    values = np.arange(len(hist))
    median = float(values[np.searchsorted(np.cumsum(hist), total / 2)])
    dev = np.abs(values - median)
    order = np.argsort(dev, kind="stable")
    mad = float(dev[order][np.searchsorted(np.cumsum(hist[order]), total / 2)])
    return median, 1.4826 * mad


def _peaks(dist: np.ndarray, min_radius: float, neck: float) -> list[tuple[int, int, float]]:
    """Local maxima of the distance map, one per cell: (x, y, radius), largest first."""
    import cv2

    k = max(3, int(2 * min_radius + 1) | 1)
    local = (dist >= cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))) & (dist >= min_radius)
    n, _, _, cents = cv2.connectedComponentsWithStats(local.astype(np.uint8), connectivity=8)
    xy = np.round(cents[1:]).astype(int)
    radius = cv2.dilate(dist, np.ones((3, 3), np.uint8))[xy[:, 1], xy[:, 0]] if n > 1 else np.zeros(0)
    order = np.argsort(-radius, kind="stable")
    kept: list[tuple[int, int, float]] = []
    kx, ky, kr = np.zeros(0), np.zeros(0), np.zeros(0)
    for i in order:
        x, y, r = int(xy[i, 0]), int(xy[i, 1]), float(radius[i])
        gap = np.hypot(kx - x, ky - y)
        near = gap <= kr + r
        if np.any(near & (gap < 0.5 * kr)):
            continue  # inside a bigger peak's inscribed circle
        if any(_same_cell(dist, (x, y, r), kept[j], neck) for j in np.flatnonzero(near)):
            continue
        kept.append((x, y, r))
        kx, ky, kr = np.append(kx, x), np.append(ky, y), np.append(kr, r)
    return kept


def _same_cell(dist: np.ndarray, a: tuple[int, int, float], b: tuple[int, int, float], neck: float) -> bool:
    """Two peaks belong to one cell when the distance map stays high all the way between them."""
    (xa, ya, ra), (xb, yb, rb) = a, b
    n = max(2, int(np.hypot(xa - xb, ya - yb)))
    xs = np.linspace(xa, xb, n).round().astype(int)
    ys = np.linspace(ya, yb, n).round().astype(int)
    return float(dist[ys, xs].min()) >= neck * min(ra, rb)


def shrink(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` reduced to at most ``width`` pixels wide, fast at any ratio.

    OpenCV's area averaging is quick for exact halving and slow for other ratios
    (2028 -> 640 px: ~40 ms on a 2-core x86 against ~1 ms here), so: halve with
    ``INTER_AREA`` while the image is at least twice too wide, then one
    ``INTER_LINEAR`` step for the remaining factor (< 2, so little aliasing).

    >>> shrink(np.zeros((1520, 2028, 3), np.uint8), 640).shape
    (480, 640, 3)
    """
    import cv2

    while image.shape[1] >= 2 * width:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)
    return image


def _regions(mask: np.ndarray, min_radius: float, neck: float, split: bool,
             min_area: float) -> list[tuple[np.ndarray, int, int]]:
    """One (local mask, x offset, y offset) per cell; touching cells are split between their peaks.

    A clump with several distance-map peaks is divided by the power diagram of the
    peaks' inscribed circles (pixel -> the peak minimising ``|p - c|^2 - r^2``): for two
    overlapping discs that boundary is the line through their intersection points.
    """
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    peaks: list[tuple[int, int, float]] = []
    if split:
        peaks = _peaks(cv2.distanceTransform(mask, cv2.DIST_L2, 5), min_radius, neck)
    by_comp: dict[int, list[tuple[int, int, float]]] = {}
    for p in peaks:
        by_comp.setdefault(int(comp[p[1], p[0]]), []).append(p)
    out: list[tuple[np.ndarray, int, int]] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        local = (comp[y:y + h, x:x + w] == i).astype(np.uint8)
        mine = by_comp.get(i, [])
        if len(mine) < 2:
            out.append((local, x, y))
            continue
        ys, xs = np.nonzero(local)
        power = np.stack([(xs + x - px) ** 2 + (ys + y - py) ** 2 - r * r for px, py, r in mine])
        owner = power.argmin(axis=0)
        for k in range(len(mine)):
            part = np.zeros_like(local)
            part[ys[owner == k], xs[owner == k]] = 1
            out.append((part, x, y))
    return out


def find_cells(frame: np.ndarray, cfg: FinderConfig | None = None) -> list[Detection]:
    """Cells of one frame (any size up to 4K and more), in reading order (top to bottom, left to right)."""
    import cv2

    cfg = cfg or FinderConfig()
    image = as_bgr_uint8(frame)
    H, W = image.shape[:2]
    small = shrink(image, cfg.work_width)
    h, w = small.shape[:2]
    scale = w / W
    min_area, max_area = cfg.min_area * h * w, cfg.max_area * h * w
    min_radius = max(2.0, 0.35 * np.sqrt(min_area / np.pi))
    mask = foreground_mask(small, cfg, cell_px=int(cfg.background * w))
    found: list[Detection] = []
    for local, ox, oy in _regions(mask, min_radius, cfg.neck, cfg.split, min_area):
        det = _measure(local, (ox, oy), cfg, min_area, max_area, 1.0 / scale, (W, H))
        if det is not None:
            found.append(det)
    found.sort(key=lambda d: (d.box[1] + d.box[3] // 2, d.box[0]))
    return found


def _measure(region: np.ndarray, offset: tuple[int, int], cfg: FinderConfig, min_area: float, max_area: float,
             up: float, size: tuple[int, int]) -> Detection | None:
    import cv2

    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    area = float(cv2.contourArea(c)) + 0.5 * cv2.arcLength(c, True)  # the contour runs through pixel centres
    if not min_area <= area <= max_area:
        return None
    hull = cv2.convexHull(c)
    hull_area = float(cv2.contourArea(hull)) + 0.5 * cv2.arcLength(hull, True)
    solidity = area / hull_area if hull_area > 0 else 0.0
    (_, _), (rw, rh), _ = cv2.minAreaRect(c)
    elongation = max(rw, rh) / max(1.0, min(rw, rh))
    if solidity < cfg.min_solidity or elongation > cfg.max_elongation:
        return None
    W, H = size
    contour = np.round((c.reshape(-1, 2).astype(np.float64) + 0.5) * up - 0.5).astype(np.int32)
    x, y, bw, bh = cv2.boundingRect(c)
    x0, y0 = int(np.floor(x * up)), int(np.floor(y * up))
    x1, y1 = min(W, int(np.ceil((x + bw) * up))), min(H, int(np.ceil((y + bh) * up)))
    box = (x0, y0, x1 - x0, y1 - y0)
    edge = x0 <= 1 or y0 <= 1 or x1 >= W - 1 or y1 >= H - 1
    return Detection(box, square_box(box, cfg.margin), area * up * up, solidity, elongation, contour, edge)


def square_box(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """The square (x, y, side) centred on ``box`` with ``margin`` x the longer side added on each side.

    >>> square_box((100, 50, 40, 20), 0.25)
    (90, 30, 60)
    """
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_square(frame: np.ndarray, crop_box: tuple[int, int, int]) -> np.ndarray:
    """Cut the square crop from the full-resolution frame; parts past the border are filled by replication.

    >>> crop_square(np.arange(16, dtype=np.uint8).reshape(4, 4), (-1, 2, 3)).tolist()
    [[8, 8, 9], [12, 12, 13], [12, 12, 13]]
    """
    import cv2

    x, y, side = crop_box
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + side), min(H, y + side)
    piece = frame[y0:y1, x0:x1]
    pads = (y0 - y, (y + side) - y1, x0 - x, (x + side) - x1)
    if any(pads):
        piece = cv2.copyMakeBorder(piece, *pads, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(piece)


def crops_of(frame: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
    """The square crops of every detection, from the full-resolution frame."""
    return [crop_square(frame, d.crop_box) for d in detections]
