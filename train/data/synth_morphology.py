"""What a synthetic cell of each SIPaKMeD class looks like: morphology parameters and their spread.

Every cell is drawn from a handful of numbers (:data:`PARAMS`). Each class has a
mean and a spread per number, chosen from the cytology the classes are named for
(Plissiti et al. 2018; Bethesda atlas):

* superficial-intermediate: large, flat, polygonal cells with folds; thin
  cyan-to-pink cytoplasm; a small, dark, smooth (pyknotic) nucleus;
* parabasal: small round cells, fairly dense cyan cytoplasm, a large pale nucleus
  with fine chromatin (high nucleus/cytoplasm ratio);
* metaplastic: mid-sized, round to slightly angular, dense blue-green cytoplasm
  with a sharp rim, a fairly large nucleus;
* koilocytotic: large cells with an enlarged, dark, wrinkled nucleus inside a
  clear perinuclear halo bounded by condensed cytoplasm; sometimes two nuclei;
* dyskeratotic: small, dense, orange (keratinised) cells with very dark,
  irregular and sometimes multiple nuclei; they tend to cluster.

``difficulty`` (0..1) makes the classes overlap: every mean is pulled towards the
mean over the classes, every spread widens, and a growing share of *atypical*
cells take their numbers partly from another class. With
``difficulty = 0`` the classes barely overlap; at 1 they overlap heavily.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoedge.edge_app.classes import SIPAKMED_CLASSES

# The numbers a cell is drawn from, and the range each is clipped to.
PARAMS: tuple[str, ...] = (
    "radius",        # mean cytoplasm radius, pixels at the synthetic "magnification"
    "elongation",    # major / minor axis of the cytoplasm
    "angularity",    # 0 round ... 1 polygonal with straight edges
    "nc_ratio",      # nucleus radius / cytoplasm radius (N/C area ratio is its square)
    "nuc_density",   # optical density of the nucleus (darkness)
    "chromatin",     # chromatin texture contrast (0 smooth ... 1 coarse)
    "nuc_irregular",  # nuclear contour irregularity
    "cyt_density",   # optical density of the cytoplasm
    "keratin",       # stain: 0 cyan / blue-green, 0.5 pink, 1 orange (keratinised)
    "halo",          # perinuclear clearing, share of the nucleus-to-rim gap (koilocytes)
    "extra_nuclei",  # probability of a second nucleus
    "folds",         # expected number of cytoplasm folds / 3
    "clustering",    # chance that the cell is placed next to another one
)

_LIMITS: dict[str, tuple[float, float]] = {
    "radius": (14.0, 120.0), "elongation": (1.0, 2.2), "angularity": (0.0, 1.0),
    "nc_ratio": (0.07, 0.62), "nuc_density": (0.35, 2.4), "chromatin": (0.0, 1.0),
    "nuc_irregular": (0.0, 0.4), "cyt_density": (0.08, 1.3), "keratin": (0.0, 1.0),
    "halo": (0.0, 0.9), "extra_nuclei": (0.0, 1.0), "folds": (0.0, 1.5), "clustering": (0.0, 0.9),
}

# (mean, spread) per parameter, per class, at difficulty 0.
_CLASS_TABLE: dict[str, dict[str, tuple[float, float]]] = {
    "superficial_intermediate": {
        "radius": (78, 11), "elongation": (1.35, 0.15), "angularity": (0.85, 0.1),
        "nc_ratio": (0.12, 0.02), "nuc_density": (1.5, 0.2), "chromatin": (0.12, 0.06),
        "nuc_irregular": (0.03, 0.02), "cyt_density": (0.22, 0.05), "keratin": (0.35, 0.25),
        "halo": (0.0, 0.02), "extra_nuclei": (0.0, 0.01), "folds": (0.6, 0.2), "clustering": (0.1, 0.05),
    },
    "parabasal": {
        "radius": (36, 4), "elongation": (1.1, 0.06), "angularity": (0.1, 0.08),
        "nc_ratio": (0.46, 0.04), "nuc_density": (0.85, 0.1), "chromatin": (0.35, 0.08),
        "nuc_irregular": (0.04, 0.02), "cyt_density": (0.45, 0.06), "keratin": (0.08, 0.05),
        "halo": (0.0, 0.02), "extra_nuclei": (0.0, 0.01), "folds": (0.0, 0.03), "clustering": (0.3, 0.1),
    },
    "metaplastic": {
        "radius": (45, 5), "elongation": (1.2, 0.1), "angularity": (0.3, 0.1),
        "nc_ratio": (0.35, 0.04), "nuc_density": (0.95, 0.1), "chromatin": (0.4, 0.08),
        "nuc_irregular": (0.06, 0.03), "cyt_density": (0.75, 0.07), "keratin": (0.1, 0.05),
        "halo": (0.0, 0.02), "extra_nuclei": (0.02, 0.02), "folds": (0.05, 0.05), "clustering": (0.3, 0.1),
    },
    "koilocytotic": {
        "radius": (62, 8), "elongation": (1.25, 0.12), "angularity": (0.5, 0.12),
        "nc_ratio": (0.25, 0.03), "nuc_density": (1.35, 0.15), "chromatin": (0.55, 0.1),
        "nuc_irregular": (0.18, 0.05), "cyt_density": (0.42, 0.07), "keratin": (0.2, 0.12),
        "halo": (0.6, 0.1), "extra_nuclei": (0.25, 0.1), "folds": (0.2, 0.1), "clustering": (0.15, 0.05),
    },
    "dyskeratotic": {
        "radius": (30, 4), "elongation": (1.35, 0.15), "angularity": (0.35, 0.12),
        "nc_ratio": (0.36, 0.05), "nuc_density": (1.75, 0.18), "chromatin": (0.3, 0.08),
        "nuc_irregular": (0.2, 0.06), "cyt_density": (0.85, 0.08), "keratin": (0.9, 0.06),
        "halo": (0.0, 0.02), "extra_nuclei": (0.3, 0.1), "folds": (0.0, 0.03), "clustering": (0.6, 0.1),
    },
}

_MEANS = np.array([[_CLASS_TABLE[c][p][0] for p in PARAMS] for c in SIPAKMED_CLASSES], dtype=np.float64)
_SPREADS = np.array([[_CLASS_TABLE[c][p][1] for p in PARAMS] for c in SIPAKMED_CLASSES], dtype=np.float64)
_LO = np.array([_LIMITS[p][0] for p in PARAMS])
_HI = np.array([_LIMITS[p][1] for p in PARAMS])

# How difficulty acts (each at difficulty 1; linear in between).
PULL_TO_CENTRE = 0.35  # share of the way each class mean moves towards the mean over classes
SPREAD_GROWTH = 1.5  # spreads grow by this factor plus one
ATYPICAL_SHARE = 0.5  # share of cells that borrow from another class
ATYPICAL_MIX = (0.2, 0.65)  # how much an atypical cell borrows (uniform in this range)


@dataclass(frozen=True)
class CellParams:
    """The numbers one cell is drawn from (see :data:`PARAMS`)."""

    cls: str
    values: tuple[float, ...]
    atypical: bool = False

    def __getattr__(self, name: str) -> float:
        try:
            return self.values[PARAMS.index(name)]
        except ValueError:
            raise AttributeError(name) from None


def class_mean(cls: str) -> dict[str, float]:
    """The mean parameters of a class at difficulty 0 (for tests and docs)."""
    return dict(zip(PARAMS, _MEANS[SIPAKMED_CLASSES.index(cls)].tolist()))


def sample_cell(cls: str, difficulty: float, rng: np.random.Generator) -> CellParams:
    """Draw one cell's parameters for class ``cls`` at ``difficulty`` in [0, 1]."""
    k = SIPAKMED_CLASSES.index(cls)
    centre = _MEANS.mean(axis=0)
    mean = _MEANS[k] + PULL_TO_CENTRE * difficulty * (centre - _MEANS[k])
    spread = _SPREADS[k] * (1.0 + SPREAD_GROWTH * difficulty)
    atypical = bool(rng.random() < ATYPICAL_SHARE * difficulty)
    if atypical:
        other = (k + 1 + int(rng.integers(len(SIPAKMED_CLASSES) - 1))) % len(SIPAKMED_CLASSES)
        w = rng.uniform(*ATYPICAL_MIX)
        mean = (1 - w) * mean + w * _MEANS[other]
        spread = (1 - w) * spread + w * _SPREADS[other] * (1.0 + SPREAD_GROWTH * difficulty)
    values = np.clip(mean + spread * rng.standard_normal(len(PARAMS)), _LO, _HI)
    return CellParams(cls, tuple(float(v) for v in values), atypical)


def mean_area(cls: str) -> float:
    """Mean cytoplasm area of a class in pixels (for deciding how many cells fit a frame)."""
    m = class_mean(cls)
    return float(np.pi * m["radius"] ** 2)
