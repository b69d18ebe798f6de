"""Composing a synthetic microscope field: cells, debris, light, blur and noise.

A field holds labelled cells (their outlines become ``.dat`` files), optionally a
few unlabelled cells of other classes (``bystanders``: a class folder's cluster
frames hold *mainly* cells of that class, as in SIPaKMeD), and things that are not
cells: dark specks, mucus strands and inflammatory cells. Cells may touch and
overlap (their absorbance adds up). The light is uneven (vignetting and a tilt),
the image is slightly out of focus and noisy; ``difficulty`` turns all of that up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from cytoedge.train.data import synth_cells as sc
from cytoedge.train.data import synth_lab
from cytoedge.train.data.synth_lab import LabStyle
from cytoedge.train.data.synth_morphology import CellParams, sample_cell

CANDIDATES = 64  # positions tried per cell
DEFAULT_LAB = LabStyle()  # lab A: the generator as it always was


@dataclass(frozen=True)
class PlacedCell:
    cls: str
    shape: sc.CellShape  # in frame coordinates
    params: CellParams
    labelled: bool


@dataclass(frozen=True)
class Distractor:
    kind: str  # "inflammatory"
    bbox_xywh: tuple[int, int, int, int]


@dataclass
class Frame:
    image: np.ndarray  # H x W x 3 uint8, BGR (OpenCV order)
    cells: list[PlacedCell]  # labelled cells, in .dat order
    bystanders: list[PlacedCell] = field(default_factory=list)
    distractors: list[Distractor] = field(default_factory=list)


def _extent(shape: sc.CellShape) -> tuple[np.ndarray, np.ndarray]:
    return shape.cyt.min(0), shape.cyt.max(0)


def _place(shapes: list[sc.CellShape], params: list[CellParams], size: tuple[int, int],
           difficulty: float, rng: np.random.Generator) -> list[np.ndarray]:
    """A centre per shape, inside the frame; cells mostly apart, some touching or overlapping."""
    w, h = size
    centres: list[np.ndarray | None] = [None] * len(shapes)
    radii = np.array([s.equivalent_radius for s in shapes])
    done_c: list[np.ndarray] = []
    done_r: list[float] = []
    for i in np.argsort(-radii, kind="stable"):
        lo, hi = _extent(shapes[i])
        lo_c, hi_c = 1.0 - lo, np.array([w - 2.0, h - 2.0]) - hi  # whole outline inside the frame
        cand = rng.uniform(lo_c, np.maximum(hi_c, lo_c), size=(CANDIDATES, 2))
        need = 0.7 if rng.random() < 0.25 + 0.35 * difficulty else 1.0  # < 1: allowed to overlap
        if done_c:
            near = rng.random(CANDIDATES) < params[i].clustering
            if near.any():
                j = rng.integers(len(done_c), size=int(near.sum()))
                ang = rng.uniform(0, 2 * np.pi, int(near.sum()))
                dist = (np.asarray(done_r)[j] + radii[i]) * rng.uniform(0.75, 1.05, int(near.sum()))
                cand[near] = np.asarray(done_c)[j] + dist[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
                cand = np.clip(cand, lo_c, np.maximum(hi_c, lo_c))
            d = np.linalg.norm(cand[:, None, :] - np.asarray(done_c)[None], axis=2)
            score = (d / (radii[i] + np.asarray(done_r))[None]).min(axis=1)
            ok = np.flatnonzero(score >= need)
            pick = int(ok[0]) if len(ok) else int(np.argmax(score))
        else:
            pick = 0
        centres[i] = cand[pick]
        done_c.append(cand[pick])
        done_r.append(float(radii[i]))
    return [c for c in centres if c is not None]


def _fit_to_frame(shape: sc.CellShape, size: tuple[int, int]) -> sc.CellShape:
    """A cell larger than the frame is shrunk to fit (only for frames smaller than the big cells)."""
    lo, hi = _extent(shape)
    span = (hi - lo).max()
    room = min(size) - 6.0
    return shape if span <= room else shape.scaled(room / span)


def _light(size: tuple[int, int], difficulty: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uneven illumination: an ``H x W`` field (vignetting and a slight tilt) and the lamp colour (RGB)."""
    w, h = size
    x = np.arange(w, dtype=np.float32)
    y = np.arange(h, dtype=np.float32)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    norm = np.float32(0.25 * (w * w + h * h))
    vignette = np.float32(rng.uniform(0.1, 0.2 + 0.15 * difficulty))
    tilt = rng.uniform(-0.04, 0.04, 2) * (1 + difficulty)
    fx = -vignette * (x - cx) ** 2 / norm + np.float32(tilt[0]) * (x / w - 0.5)
    fy = 1.0 - vignette * (y - cy) ** 2 / norm + np.float32(tilt[1]) * (y / h - 0.5)
    lamp = np.array([0.93, 0.935, 0.95]) * 255 * (1 + rng.uniform(-0.03, 0.03, 3))
    return fy[:, None] + fx[None, :], lamp


def compose_frame(classes: list[str], size: tuple[int, int], difficulty: float,
                  rng: np.random.Generator, bystander_classes: list[str] | None = None,
                  lab: LabStyle = DEFAULT_LAB) -> Frame:
    """One field ``size = (width, height)`` holding labelled cells of ``classes`` (in that order), as ``lab``
    stains and photographs it (:mod:`train.data.synth_lab`)."""
    w, h = size
    bystander_classes = list(bystander_classes or [])
    all_classes = classes + bystander_classes
    params = [sample_cell(c, difficulty, rng) for c in all_classes]
    shapes = [_fit_to_frame(sc.cell_shape(p, rng), size) for p in params]
    centres = _place(shapes, params, size, difficulty, rng)
    placed = [PlacedCell(c, s.translated(*xy), p, i < len(classes))
              for i, (c, s, p, xy) in enumerate(zip(all_classes, shapes, params, centres))]

    od, palette = blank_slide(size, difficulty, rng, lab)
    area = w * h / (1280 * 960)
    for _ in range(rng.poisson((0.6 + 1.5 * difficulty) * area)):
        sc.draw_mucus(od, rng, palette)
    for cell in placed:
        sc.draw_cell(od, cell.shape, cell.params, palette, rng)
    for _ in range(rng.poisson((15 + 30 * difficulty) * area)):
        sc.draw_speck(od, rng.uniform([0, 0], [w, h]), rng)
    distractors = []
    for _ in range(rng.poisson((3 + 8 * difficulty) * area)):
        box = sc.draw_inflammatory(od, rng.uniform([12, 12], [w - 12, h - 12]), palette, rng)
        distractors.append(Distractor("inflammatory", box))

    img = render(od, size, difficulty, rng, lab)
    return Frame(img, [c for c in placed if c.labelled],
                 [c for c in placed if not c.labelled], distractors)


def blank_slide(size: tuple[int, int], difficulty: float, rng: np.random.Generator,
                lab: LabStyle = DEFAULT_LAB) -> tuple[np.ndarray, sc.Palette]:
    """An empty ``H x W x 3`` absorbance canvas (a faint background stain) and the slide's stain palette."""
    w, h = size
    palette = synth_lab.stain(sc.Palette.varied(rng, 0.05 + 0.12 * difficulty), lab)
    haze = 0.025 + 0.012 * sc.smooth_noise((h, w), 48.0, rng)  # faint background stain
    return cv2.merge([haze * float(a) for a in palette.cyan]), palette  # float32, RGB


def render(od: np.ndarray, size: tuple[int, int], difficulty: float, rng: np.random.Generator,
           lab: LabStyle = DEFAULT_LAB) -> np.ndarray:
    """Absorbance canvas -> the BGR uint8 picture: uneven light, slight defocus, sensor noise (``od`` is consumed);
    then the lab's camera (gamma, JPEG)."""
    np.negative(od, out=od)
    np.exp(od, out=od)
    light, lamp = _light(size, difficulty, rng)
    light = synth_lab.falloff(light, lab)
    lamp = synth_lab.lamp(lamp, lab)
    cv2.multiply(od, cv2.merge([light] * 3), dst=od)
    cv2.multiply(od, (*lamp.tolist(), 0.0), dst=od)
    img = cv2.GaussianBlur(od, (0, 0), 0.6 + rng.uniform(0.0, 0.5) + 1.2 * difficulty + lab.blur)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(1.5 + 4.0 * difficulty)
    img += noise
    img = synth_lab.camera(img, lab)
    img += np.float32(0.5)  # round to nearest in the cast below
    np.clip(img, 0, 255, out=img)
    return synth_lab.jpeg(cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR), lab)
