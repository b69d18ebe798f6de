"""Crops that are not classifiable cells: what a cell finder hands the classifier on a real slide.

Eleven kinds, drawn with the same stains, light, blur and noise as the synthetic
cells (:mod:`train.data.synth_frames`), so that only *what* is in the crop differs:

* ``debris``        dark specks and irregular fragments, no cell;
* ``fibre``         long thin strands (cotton, mucus threads) crossing the crop;
* ``background``    empty slide: haze, uneven light, sometimes a faint mucus strand;
* ``blur``          a cell under heavy Gaussian blur (vibration, a smeared capture);
* ``noise``         sensor-like noise: uniform, Gaussian or blocky, no picture at all;
* ``stain_blob``    amorphous blobs of dense stain without cell structure;
* ``bubble``        an air bubble: a dark refracting rim around a bright centre;
* ``out_of_focus``  a cell seen far out of focus (a disc-shaped defocus, soft halo);
* ``clump``         three to seven cells piled over each other;
* ``black``         a dark frame (lamp off, shutter closed);
* ``white``         a blown-out frame (lamp too bright, no slide).

Two sets with *different kinds* and seeds are written (:data:`SETS`): ``negatives/``
may be used by training (outlier exposure), ``ood/`` is a test set that training
must never see. Each folder holds :data:`MARKER`, which tells the data-set reader
that it is not a class (:func:`train.data.sipakmed.scan_dataset` skips it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cytoedge.edge_app.classes import SIPAKMED_CLASSES
from cytoedge.train.data import synth_cells as sc
from cytoedge.train.data.sipakmed import NONCELL_MARKER as MARKER  # a folder holding it is never a class
from cytoedge.train.data.synth_frames import blank_slide, render
from cytoedge.train.data.synth_morphology import sample_cell

NEGATIVES_DIR, OOD_DIR = "negatives", "ood"
# Kinds per set: training may use the first; the second is the test set of OTHER kinds.
SETS: dict[str, tuple[str, ...]] = {
    NEGATIVES_DIR: ("debris", "fibre", "background", "blur", "noise"),
    OOD_DIR: ("stain_blob", "bubble", "out_of_focus", "clump", "black", "white"),
}
OOD_SEED_OFFSET = 1000  # the ood/ set is drawn with seed + this: another seed than the training negatives
SIDE = (72, 200)  # crop side in pixels, like the single-cell crops (a 30-80 px radius cell plus margin)
_STREAM = 97  # spawn-key prefix that keeps these streams apart from the cells' and fields'


def _side(rng: np.random.Generator) -> int:
    return int(rng.integers(SIDE[0], SIDE[1] + 1))


def _frame(side: int, difficulty: float, rng: np.random.Generator,
           draw: Callable[[np.ndarray, sc.Palette], None]) -> np.ndarray:
    """A ``side x side`` crop: blank slide, ``draw`` adds absorbance, rendered like a field."""
    od, palette = blank_slide((side, side), difficulty, rng)
    draw(od, palette)
    return render(od, (side, side), difficulty, rng)


def _cells_od(n: int, spread: float, difficulty: float, rng: np.random.Generator) -> tuple[int, Callable]:
    """Side of a crop that holds ``n`` random cells within ``spread`` x their radius of the centre, and the drawer."""
    params = [sample_cell(SIPAKMED_CLASSES[int(rng.integers(len(SIPAKMED_CLASSES)))], difficulty, rng)
              for _ in range(n)]
    shapes = [sc.cell_shape(p, rng) for p in params]
    r = max(s.equivalent_radius for s in shapes)
    offsets = [np.zeros(2)] + [rng.uniform(-spread, spread, 2) * r for _ in range(n - 1)]
    lo = np.min([s.cyt.min(0) + o for s, o in zip(shapes, offsets)], axis=0)
    hi = np.max([s.cyt.max(0) + o for s, o in zip(shapes, offsets)], axis=0)
    extent = float((hi - lo).max())
    scale = min(1.0, (SIDE[1] / 1.16) / extent)  # the crop margin of the real crops is 8 % per side
    side = int(np.clip(np.ceil(extent * scale * 1.16), SIDE[0], SIDE[1]))
    centre = np.full(2, side / 2.0) - (lo + hi) / 2 * scale

    def draw(od: np.ndarray, palette: sc.Palette) -> None:
        for s, p, o in zip(shapes, params, offsets):
            sc.draw_cell(od, s.scaled(scale).translated(*(centre + o * scale)), p, palette, rng)

    return side, draw


def _debris(d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)

    def draw(od: np.ndarray, _p: sc.Palette) -> None:
        c = np.full(2, side / 2.0)
        for _ in range(int(rng.integers(1, 5))):
            frag = sc.star_outline(rng.uniform(3.0, 14.0), 1.0 + rng.random(), rng.uniform(0, np.pi), 0.4, 0.35, rng)
            sc.draw_blob(od, frag + c + rng.normal(0, side / 6, 2), rng.uniform(0.5, 1.8), sc.DEBRIS)
        for _ in range(int(rng.integers(8, 40))):
            sc.draw_speck(od, c + rng.normal(0, side / 5, 2), rng)

    return _frame(side, d, rng, draw)


def _strand(od: np.ndarray, side: int, rng: np.random.Generator, colour: np.ndarray, density: float) -> None:
    start = rng.uniform(0, side, 2) * (rng.random(2) < 0.5)
    heading = rng.uniform(0, 2 * np.pi)
    pts = [start]
    for _ in range(int(rng.integers(6, 14))):
        heading += rng.normal(0, 0.25)
        pts.append(pts[-1] + rng.uniform(10, 30) * np.array([np.cos(heading), np.sin(heading)]))
    layer = np.zeros(od.shape[:2], np.float32)
    cv2.polylines(layer, [np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)], False, 1.0,
                  thickness=int(rng.integers(1, 5)), lineType=cv2.LINE_AA)
    od += (density * cv2.GaussianBlur(layer, (0, 0), 0.7))[:, :, None] * colour


def _fibre(d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)

    def draw(od: np.ndarray, p: sc.Palette) -> None:
        for _ in range(int(rng.integers(1, 4))):
            colour = [p.cyan, p.pink, p.orange, sc.DEBRIS][int(rng.integers(4))]
            _strand(od, side, rng, colour, rng.uniform(0.4, 1.2))

    return _frame(side, d, rng, draw)


def _background(d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)

    def draw(od: np.ndarray, p: sc.Palette) -> None:
        if rng.random() < 0.5:
            sc.draw_mucus(od, rng, p)
        for _ in range(int(rng.poisson(2))):
            sc.draw_speck(od, rng.uniform(0, side, 2), rng)

    return _frame(side, d, rng, draw)


def _blur(d: float, rng: np.random.Generator) -> np.ndarray:
    side, draw = _cells_od(1, 0.0, d, rng)
    img = _frame(side, d, rng, draw)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(4.0, 9.0))


def _noise(_d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)
    kind = int(rng.integers(3))
    if kind == 0:  # uniform
        return rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    if kind == 1:  # Gaussian around a grey level
        img = rng.normal(rng.uniform(60, 200), rng.uniform(20, 70), (side, side, 3))
    else:  # blocky: coarse noise scaled up
        small = rng.uniform(0, 255, (int(rng.integers(3, 12)),) * 2 + (3,)).astype(np.float32)
        img = cv2.resize(small, (side, side), interpolation=cv2.INTER_NEAREST)
    return np.clip(img, 0, 255).astype(np.uint8)


def _stain_blob(d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)

    def draw(od: np.ndarray, p: sc.Palette) -> None:
        c = np.full(2, side / 2.0)
        for _ in range(int(rng.integers(1, 4))):
            r = rng.uniform(0.12, 0.32) * side
            blob = sc.star_outline(r, 1.0 + 0.8 * rng.random(), rng.uniform(0, np.pi), 0.0, 0.3, rng)
            colour = [p.nucleus, p.orange, p.pink, sc.DEBRIS][int(rng.integers(4))]
            pos = c + rng.normal(0, side / 8, 2)
            sc.draw_blob(od, blob + pos, rng.uniform(0.7, 2.0), colour)

    return _frame(side, d, rng, draw)


def _bubble(d: float, rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)

    def draw(od: np.ndarray, _p: sc.Palette) -> None:
        c = np.full(2, side / 2.0) + rng.normal(0, side / 12, 2)
        r = rng.uniform(0.25, 0.45) * side
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        dist = np.hypot(xx - c[0], yy - c[1])
        width = rng.uniform(2.0, 0.12 * r)
        rim = np.exp(-((dist - r) / width) ** 2)
        inside = (dist < r - width).astype(np.float32)
        od *= (1.0 - 0.9 * inside)[:, :, None]  # the bubble's centre is clearer than the slide
        od += (rng.uniform(0.6, 1.6) * rim)[:, :, None] * np.array([0.8, 0.8, 0.85], np.float32)

    return _frame(side, d, rng, draw)


def _out_of_focus(d: float, rng: np.random.Generator) -> np.ndarray:
    side, draw = _cells_od(1, 0.0, d, rng)
    img = _frame(side, d, rng, draw)
    radius = int(rng.integers(6, 15))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)).astype(np.float32)
    return cv2.filter2D(img, -1, disc / disc.sum(), borderType=cv2.BORDER_REFLECT)


def _clump(d: float, rng: np.random.Generator) -> np.ndarray:
    side, draw = _cells_od(int(rng.integers(3, 8)), 0.45, d, rng)
    return _frame(side, d, rng, draw)


def _flat(level: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    side = _side(rng)
    base = rng.uniform(*level, 3)
    img = base + rng.normal(0, rng.uniform(0, 3), (side, side, 3))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


KINDS: dict[str, Callable[[float, np.random.Generator], np.ndarray]] = {
    "debris": _debris, "fibre": _fibre, "background": _background, "blur": _blur, "noise": _noise,
    "stain_blob": _stain_blob, "bubble": _bubble, "out_of_focus": _out_of_focus, "clump": _clump,
    "black": lambda _d, rng: _flat((0, 25), rng), "white": lambda _d, rng: _flat((232, 255), rng),
}


def write_set(folder: Path, name: str, per_kind: int, seed: int, difficulty: float, generator: str,
              version: int) -> int:
    """Write ``per_kind`` crops of every kind of set ``name`` into ``folder/<kind>/``; returns the crop count."""
    from cytoedge.train.data.synth import write_image  # here: synth imports this module

    kinds = SETS[name]
    folder.mkdir(parents=True)
    for kind in kinds:
        (folder / kind).mkdir()
        k = list(KINDS).index(kind)
        for i in range(per_kind):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(version, _STREAM, k, i)))
            write_image(folder / kind / f"{kind}_{i + 1:03d}.png", KINDS[kind](difficulty, rng))
    role = ("non-cell crops that training may use (outlier exposure)" if name == NEGATIVES_DIR
            else "non-cell test crops: kinds training never sees, another seed; never train on them")
    meta = {"generator": generator, "version": version, "set": name, "role": role, "seed": seed,
            "difficulty": difficulty, "kinds": {k: per_kind for k in kinds},
            "note": f"not a class: the data-set reader skips any folder holding {MARKER}"}
    (folder / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
    return per_kind * len(kinds)
