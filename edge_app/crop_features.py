"""What a crop looks like as a picture, in eleven numbers: can it be one stained, focused cell at all?

The open-set score's ``image`` part (:mod:`edge_app.rejection`) fits a Gaussian to
these numbers over the training cells and measures how far a crop lies from it. They
are computed on the crop exactly as the model sees it (``preprocess(...,
normalize=False)``: resized and centre-cropped uint8 pixels) with numpy and OpenCV,
about 0.1 ms per crop, and do not depend on the channel order. Absorbance is measured
against the crop's own background (its 95th-percentile brightness), so lamp colour and
exposure changes cancel out:

=================  ==========================================================================
``exposure``       log background brightness: a dark frame (lamp off) is far below any cell
``contrast``       log standard deviation of brightness: empty or blown-out crops have none
``stained``        share of pixels with absorbance > 0.15 (stain): a cell fills its crop
``dense``          share with absorbance > 0.7 (nuclei, keratin)
``sharpness``      log(variance of the Laplacian / variance of brightness): blur and defocus
                   lower it, sensor noise raises it
``grain``          log(mean neighbour difference / standard deviation): pixel noise
``centred``        stained share of the central half minus the whole crop's: the finder
                   centres a cell; debris fields and fibres are not centred
``saturation``     mean colour saturation: noise is garish, stains are not
``nuclei``         log(1 + dense blobs of >= 6 pixels): a clump holds several
``specks``         log(1 + dense blobs under 6 pixels): debris is specks
``border``         stained share of the crop's outermost pixels: a single cell leaves a
                   background margin; clumps, fibres and blobs run off the edge
=================  ==========================================================================
"""

from __future__ import annotations

import numpy as np

FEATURES: tuple[str, ...] = ("exposure", "contrast", "stained", "dense", "sharpness", "grain", "centred",
                             "saturation", "nuclei", "specks", "border")
STAINED_OD, DENSE_OD = 0.15, 0.7  # absorbance (natural log) thresholds
NUCLEUS_PIXELS = 6  # dense blobs of at least this many pixels count as nuclei, smaller ones as specks


def _one(crop: np.ndarray) -> list[float]:
    import cv2

    px = np.asarray(crop, np.float32)
    g = px.mean(axis=2) * (1.0 / 255.0)
    bg = max(float(np.percentile(g, 95)), 0.02)
    od = -np.log(np.clip(g / bg, 1e-3, 1.0))
    std = float(g.std())
    lap = cv2.Laplacian(g, cv2.CV_32F)
    s0, s1 = g.shape
    centre = od[s0 // 4:3 * s0 // 4, s1 // 4:3 * s1 // 4]
    hi, lo = px.max(axis=2), px.min(axis=2)
    stained, dense = od > STAINED_OD, od > DENSE_OD
    n, _, stats, _ = cv2.connectedComponentsWithStats(dense.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    edge = np.concatenate([stained[0], stained[-1], stained[:, 0], stained[:, -1]])
    return [np.log(bg + 0.01), np.log(std + 1e-3), float(stained.mean()), float(dense.mean()),
            float(np.log(lap.var() / (std * std + 1e-6) + 1e-6)),
            float(np.log(np.abs(np.diff(g, axis=1)).mean() / (std + 1e-3) + 1e-4)),
            float((centre > STAINED_OD).mean() - stained.mean()), float(((hi - lo) / (hi + 1.0)).mean()),
            float(np.log1p((areas >= NUCLEUS_PIXELS).sum())), float(np.log1p((areas < NUCLEUS_PIXELS).sum())),
            float(edge.mean())]


def crop_features(pixels: np.ndarray) -> np.ndarray:
    """``N x S x S x 3`` crops (0..255, as the model sees them) -> ``N x len(FEATURES)`` float64.

    >>> f = crop_features(np.zeros((2, 32, 32, 3), np.uint8))  # black: no light at all, "stain" everywhere
    >>> f.shape, round(float(f[0, FEATURES.index("exposure")]), 3), float(f[0, FEATURES.index("stained")])
    ((2, 11), -3.507, 1.0)
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 crops, got shape {pixels.shape}")
    return np.array([_one(c) for c in pixels], np.float64).reshape(len(pixels), len(FEATURES))
