"""Drawing one synthetic cell (and the debris around it) as optical density.

A bright-field microscope shows stain that absorbs light, so every object here is
drawn as *optical density* (absorbance) per RGB channel into one float canvas;
overlapping objects add up, and the frame becomes ``light * exp(-OD)`` at the end
(:mod:`train.data.synth_frames`). Stains are absorbance vectors: the cyan /
blue-green cytoplasm of most Pap-stained cells absorbs red, keratinised (orange)
cytoplasm absorbs blue and green, haematoxylin (nuclei) absorbs red and green.

Shapes are star-shaped outlines around their centre: a blend of an ellipse and a
random polygon (``angularity``) with a few harmonics of contour noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cytoedge.train.data.synth_morphology import CellParams

# Absorbance per unit density, RGB.
CYAN = np.array([0.95, 0.36, 0.40], np.float32)  # light green / cyan cytoplasm
PINK = np.array([0.22, 0.78, 0.45], np.float32)  # eosinophilic cytoplasm
ORANGE = np.array([0.10, 0.55, 0.95], np.float32)  # keratinised (Orange G)
HAEMATOXYLIN = np.array([0.88, 0.95, 0.52], np.float32)  # nuclei, blue-purple
DEBRIS = np.array([0.75, 0.85, 0.95], np.float32)  # brownish dark specks

_SUBPIXEL = 4  # fractional bits for cv2.fillPoly


@dataclass(frozen=True)
class Palette:
    """The stain colours of one slide (each frame varies them slightly, as staining batches do)."""

    cyan: np.ndarray
    pink: np.ndarray
    orange: np.ndarray
    nucleus: np.ndarray

    @classmethod
    def varied(cls, rng: np.random.Generator, amount: float) -> "Palette":
        def jitter(v: np.ndarray) -> np.ndarray:
            return (v * (1.0 + amount * rng.standard_normal(3))).clip(0.02, None).astype(np.float32)

        return cls(jitter(CYAN), jitter(PINK), jitter(ORANGE), jitter(HAEMATOXYLIN))

    def cytoplasm(self, keratin: float) -> np.ndarray:
        """Absorbance of cytoplasm: cyan at 0, pink at 0.5, orange at 1."""
        if keratin <= 0.5:
            return self.cyan + (self.pink - self.cyan) * (keratin / 0.5)
        return self.pink + (self.orange - self.pink) * ((keratin - 0.5) / 0.5)


@dataclass(frozen=True)
class CellShape:
    """Outlines of one cell (``N x 2`` float arrays, x right, y down)."""

    cyt: np.ndarray
    nuclei: tuple[np.ndarray, ...]  # the first is the one its .dat file records
    halo: np.ndarray | None  # perinuclear clearing (koilocytes)

    def translated(self, dx: float, dy: float) -> "CellShape":
        d = np.array([dx, dy])
        return CellShape(self.cyt + d, tuple(n + d for n in self.nuclei),
                         None if self.halo is None else self.halo + d)

    def scaled(self, f: float) -> "CellShape":
        return CellShape(self.cyt * f, tuple(n * f for n in self.nuclei),
                         None if self.halo is None else self.halo * f)

    @property
    def equivalent_radius(self) -> float:
        return float(np.sqrt(polygon_area(self.cyt) / np.pi))


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a closed outline."""
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _polygon_radius(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distance from the centre to the edge of a random convex-ish polygon, along each angle."""
    k = int(rng.integers(5, 9))
    step = 2 * np.pi / k
    ang = np.sort((np.arange(k) * step + rng.uniform(-0.25, 0.25, k) * step) % (2 * np.pi))
    rad = np.clip(1.0 + 0.12 * rng.standard_normal(k), 0.8, 1.2)
    vx, vy = rad * np.cos(ang), rad * np.sin(ang)
    ax, ay = vx, vy
    bx, by = np.roll(vx, -1), np.roll(vy, -1)
    # segment i runs from vertex i to vertex i+1; find the one each ray crosses
    seg = (np.searchsorted(ang, theta % (2 * np.pi), side="right") - 1) % k
    ax, ay, bx, by = ax[seg], ay[seg], bx[seg], by[seg]
    dx, dy = np.cos(theta), np.sin(theta)
    ex, ey = bx - ax, by - ay
    # ray t*d = a + s*e  ->  t = (a x e) / (d x e)
    den = dx * ey - dy * ex
    t = (ax * ey - ay * ex) / np.where(np.abs(den) < 1e-9, 1e-9, den)
    return np.abs(t)


def star_outline(radius: float, elongation: float, angle: float, angularity: float,
                 irregular: float, rng: np.random.Generator) -> np.ndarray:
    """A closed outline around (0, 0) of mean radius ``radius`` (area-preserving elongation)."""
    n = max(32, int(2 * np.pi * radius / 3.0))
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    if angularity > 0:
        poly = _polygon_radius(theta, rng)
        r = (1 - angularity) * r + angularity * poly / poly.mean()
    if irregular > 0:
        h = np.arange(2, 7)
        amp = rng.standard_normal(len(h)) / h
        phase = rng.uniform(0, 2 * np.pi, len(h))
        wobble = (amp[:, None] * np.cos(h[:, None] * theta[None, :] + phase[:, None])).sum(0)
        wobble *= irregular / max(float(wobble.std()), 1e-6)
        r = r * np.clip(1.0 + wobble, 0.55, 1.5)
    s = np.sqrt(elongation)
    x, y = r * np.cos(theta) * s * radius, r * np.sin(theta) / s * radius
    c, sn = np.cos(angle), np.sin(angle)
    return np.stack([c * x - sn * y, sn * x + c * y], axis=1)


def _inner_radius(outline: np.ndarray, point: tuple[float, float]) -> float:
    """Distance from ``point`` (inside) to the nearest edge of ``outline``."""
    return float(cv2.pointPolygonTest(outline.astype(np.float32).reshape(-1, 1, 2), point, True))


def cell_shape(p: CellParams, rng: np.random.Generator) -> CellShape:
    """The outlines of one cell around (0, 0); every nucleus lies well inside the cytoplasm."""
    cyt = star_outline(p.radius, p.elongation, rng.uniform(0, np.pi), p.angularity,
                       0.03 + 0.3 * p.nuc_irregular * (1 - p.angularity), rng)
    room = 0.85 * _inner_radius(cyt, (0.0, 0.0))  # nuclei and halo stay within this disc
    two = rng.random() < p.extra_nuclei
    nuc_r = p.nc_ratio * p.radius * (0.78 if two else 1.0)
    nuc_elong = 1.0 + abs(0.12 * rng.standard_normal())
    nuc_reach = np.sqrt(nuc_elong) * (1 + 2.5 * p.nuc_irregular)  # outline extent / nuc_r, upper bound
    offsets = [np.zeros(2)]
    if two:
        d = rng.uniform(0, 2 * np.pi)
        u = np.array([np.cos(d), np.sin(d)]) * nuc_r * rng.uniform(0.9, 1.2)
        offsets = [u, -u]
    max_off = max(float(np.hypot(*o)) for o in offsets)
    nuc_r = max(2.0, min(nuc_r, (room - max_off) / nuc_reach))
    # a small off-centre shift, within the room left
    slack = max(0.0, room - max_off - nuc_r * nuc_reach)
    shift = rng.uniform(-0.4, 0.4, 2) * slack
    nuclei = tuple(star_outline(nuc_r * rng.uniform(0.9, 1.05) if i else nuc_r, nuc_elong, rng.uniform(0, np.pi),
                                0.0, p.nuc_irregular, rng) + o + shift
                   for i, o in enumerate(offsets))
    nuclei = _fit_inside(cyt, nuclei, shift)
    halo = None
    if p.halo > 0.08:
        nuc_extent = max(float(np.hypot(*(n - shift).T).max()) for n in nuclei)
        halo_r = nuc_extent + p.halo * max(0.0, room / 1.25 - nuc_extent)  # 1.25: the halo's own wobble
        if halo_r > nuc_extent + 2:
            halo = star_outline(halo_r, 1.0 + 0.1 * rng.random(), rng.uniform(0, np.pi), 0.15, 0.08, rng) + shift
    return CellShape(cyt, nuclei, halo)


def _fit_inside(cyt: np.ndarray, nuclei: tuple[np.ndarray, ...], centre: np.ndarray,
                margin: float = 1.5) -> tuple[np.ndarray, ...]:
    """Shrink the nuclei towards ``centre`` until every point lies ``margin`` pixels inside ``cyt``.

    The sizes chosen in :func:`cell_shape` nearly always fit; this guards the rare
    contour-noise extreme so the .dat files never put a nucleus outside its cell.
    """
    contour = cyt.astype(np.float32).reshape(-1, 1, 2)
    for _ in range(20):
        worst = min(cv2.pointPolygonTest(contour, (float(x), float(y)), True)
                    for n in nuclei for x, y in n)
        if worst >= margin:
            break
        nuclei = tuple(centre + (n - centre) * 0.9 for n in nuclei)
    return nuclei


# --- rasterising ----------------------------------------------------------------------------

def _box(outline: np.ndarray, shape: tuple[int, int], pad: int = 3) -> tuple[int, int, int, int] | None:
    h, w = shape
    x0, y0 = np.floor(outline.min(0)).astype(int) - pad
    x1, y1 = np.ceil(outline.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return None if x1 <= x0 or y1 <= y0 else (int(x0), int(y0), int(x1), int(y1))


def soft_mask(outline: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage (0..1 float32) of a polygon in a ``size = (h, w)`` patch at ``origin = (x0, y0)``."""
    m = np.zeros(size, np.uint8)
    pts = np.round((outline - np.asarray(origin)) * (1 << _SUBPIXEL)).astype(np.int32)
    cv2.fillPoly(m, [pts.reshape(-1, 1, 2)], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
    return m.astype(np.float32) * (1.0 / 255.0)


def smooth_noise(size: tuple[int, int], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-ish noise of feature size ``grain`` pixels in a ``size = (h, w)`` patch."""
    h, w = size
    sh, sw = max(2, int(h / grain) + 2), max(2, int(w / grain) + 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_cell(od: np.ndarray, shape: CellShape, p: CellParams, palette: Palette,
              rng: np.random.Generator) -> None:
    """Add one cell's absorbance to the ``H x W x 3`` canvas ``od`` (in place)."""
    box = _box(shape.cyt, od.shape[:2])
    if box is None:
        return
    x0, y0, x1, y1 = box
    size, origin = (y1 - y0, x1 - x0), (x0, y0)
    cmask = soft_mask(shape.cyt, origin, size)
    inside = (cmask > 0.5).astype(np.uint8)
    edge_dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)

    dens = p.cyt_density * (1.0 + 0.18 * smooth_noise(size, 9.0, rng))
    dens += (0.15 + 0.45 * p.cyt_density) * np.exp(-edge_dist / 1.8)  # the rim
    n_folds = int(rng.poisson(3.0 * p.folds))
    if n_folds:
        layer = np.zeros(size, np.float32)
        r = shape.equivalent_radius
        cx, cy = shape.cyt.mean(0) - np.asarray(origin)
        for _ in range(n_folds):
            a, length = rng.uniform(0, np.pi), rng.uniform(0.5, 1.3) * r
            ox, oy = rng.uniform(-0.4, 0.4, 2) * r
            dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
            pts = np.array([[cx + ox - dx, cy + oy - dy], [cx + ox + rng.uniform(-0.2, 0.2) * r, cy + oy],
                            [cx + ox + dx, cy + oy + dy]])
            cv2.polylines(layer, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], False, 1.0,
                          thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
        dens += (0.35 + 0.5 * p.cyt_density) * cv2.GaussianBlur(layer, (0, 0), 0.8)
    if shape.halo is not None:
        hmask = soft_mask(shape.halo, origin, size)
        ring = np.clip(cv2.GaussianBlur(hmask, (0, 0), 2.5) - hmask, 0.0, 1.0)
        dens = dens * (1.0 - 0.85 * hmask) + 1.6 * p.cyt_density * ring
    od[y0:y1, x0:x1] += (dens * cmask)[:, :, None] * palette.cytoplasm(p.keratin)

    for nuc in shape.nuclei:
        nb = _box(nuc, od.shape[:2])
        if nb is None:
            continue
        nx0, ny0, nx1, ny1 = nb
        nsize = (ny1 - ny0, nx1 - nx0)
        nmask = soft_mask(nuc, (nx0, ny0), nsize)
        grains = 1.0 + 0.9 * p.chromatin * smooth_noise(nsize, 2.5, rng)
        nd = p.nuc_density * np.clip(grains, 0.15, None) * nmask
        od[ny0:ny1, nx0:nx1] += nd[:, :, None] * palette.nucleus


# --- things that are not labelled cells -----------------------------------------------------

def draw_blob(od: np.ndarray, outline: np.ndarray, density: float, colour: np.ndarray) -> None:
    box = _box(outline, od.shape[:2], pad=2)
    if box is None:
        return
    x0, y0, x1, y1 = box
    m = soft_mask(outline, (x0, y0), (y1 - y0, x1 - x0))
    od[y0:y1, x0:x1] += (density * m)[:, :, None] * colour


def draw_inflammatory(od: np.ndarray, centre: np.ndarray, palette: Palette,
                      rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A neutrophil (2-4 nuclear lobes) or lymphocyte (one round nucleus); returns its box (x, y, w, h)."""
    r = rng.uniform(6.0, 10.0)
    body = star_outline(r, 1.0 + 0.15 * rng.random(), rng.uniform(0, np.pi), 0.0, 0.06, rng) + centre
    draw_blob(od, body, rng.uniform(0.08, 0.18), palette.cyan)
    if rng.random() < 0.7:
        for _ in range(int(rng.integers(2, 5))):
            lobe = star_outline(rng.uniform(2.0, 3.2), 1.2, rng.uniform(0, np.pi), 0.0, 0.05, rng)
            draw_blob(od, lobe + centre + rng.uniform(-0.45, 0.45, 2) * r, rng.uniform(1.0, 1.6), palette.nucleus)
    else:
        core = star_outline(0.7 * r, 1.05, 0.0, 0.0, 0.04, rng) + centre
        draw_blob(od, core, rng.uniform(1.1, 1.6), palette.nucleus)
    h, w = od.shape[:2]
    x0, y0 = np.maximum(np.floor(body.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(body.max(0)).astype(int), [w - 1, h - 1])
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def draw_speck(od: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> None:
    speck = star_outline(rng.uniform(0.8, 2.8), 1.0 + 0.6 * rng.random(), rng.uniform(0, np.pi), 0.0, 0.15, rng)
    draw_blob(od, speck + centre, rng.uniform(0.5, 1.8), DEBRIS)


def draw_mucus(od: np.ndarray, rng: np.random.Generator, palette: Palette) -> None:
    """A faint, blurred, wavy strand of mucus across part of the field."""
    h, w = od.shape[:2]
    n = int(rng.integers(6, 14))
    start = rng.uniform([0, 0], [w, h])
    heading = rng.uniform(0, 2 * np.pi)
    steps = []
    p = start.copy()
    for _ in range(n):
        heading += rng.normal(0, 0.35)
        p = p + rng.uniform(15, 45) * np.array([np.cos(heading), np.sin(heading)])
        steps.append(p.copy())
    pts = np.vstack([start, *steps])
    box = _box(pts, (h, w), pad=12)
    if box is None:
        return
    x0, y0, x1, y1 = box
    layer = np.zeros((y1 - y0, x1 - x0), np.float32)
    local = np.round(pts - [x0, y0]).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(layer, [local], False, 1.0, thickness=int(rng.integers(2, 8)), lineType=cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(1.5, 3.5))
    od[y0:y1, x0:x1] += (rng.uniform(0.06, 0.16) * layer)[:, :, None] * palette.cyan
