"""What a crop looks like as a picture, in eleven numbers: can it be one stained, focused cell at all?

The open-set score's ``image`` part (:mod:`edge_app.rejection`) fits a Gaussian to
these numbers over the training cells and measures how far a crop lies from it. They
are computed on the crop exactly as the model sees it (``preprocess(...,
normalize=False)``: resized and centre-cropped uint8 pixels) with numpy and OpenCV,
about 1 ms per 224 px crop here (6 ms before the uint8 fast path), and do not depend on
the channel order. Absorbance is measured
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
SMALL = 64  # card schema 3: the statistics are taken on a copy of the crop this many pixels wide (INTER_AREA);
# at 224 px they cost more than the int8 network (1.0 ms per crop), at 64 px about a twelfth of it


# brightness of a uint8 pixel from its channel sum k (0..765), exactly as ``mean(axis=2) / 255`` gives it
_BRIGHTNESS = np.arange(766, dtype=np.float32) / np.float32(3) * (1.0 / 255.0)


def _percentile95(k: np.ndarray) -> float:
    """``np.percentile(_BRIGHTNESS[k], 95)`` bit for bit (linear interpolation), from a histogram: no sort."""
    n = k.size
    cum = np.cumsum(np.bincount(k.ravel(), minlength=766))
    virtual = 0.95 * (n - 1)
    lo = int(np.floor(virtual))
    gamma = virtual - lo
    a = _BRIGHTNESS[int(np.searchsorted(cum, lo + 1))]
    b = _BRIGHTNESS[int(np.searchsorted(cum, min(lo + 2, n)))]
    diff = np.float32(b - a)
    return float(a + diff * gamma) if gamma < 0.5 else float(b - diff * (1 - gamma))


def _one(crop: np.ndarray) -> list[float]:
    import cv2

    if crop.dtype == np.uint8:  # per-channel OpenCV ops and a histogram: the same numbers, ~9x faster than
        b, gr, r = cv2.split(np.ascontiguousarray(crop))  # numpy's reductions over a last axis of 3 and a sort
        hi = cv2.max(cv2.max(b, gr), r).astype(np.float32)
        lo = cv2.min(cv2.min(b, gr), r).astype(np.float32)
        k = b.astype(np.int32) + gr + r
        g = _BRIGHTNESS[k]
        bg = max(_percentile95(k), 0.02)
    else:
        px = np.asarray(crop, np.float32)
        hi, lo = px.max(axis=2), px.min(axis=2)
        g = px.mean(axis=2) * (1.0 / 255.0)
        bg = max(float(np.percentile(g, 95)), 0.02)
    od = -np.log(np.clip(g / bg, 1e-3, 1.0))
    std = float(g.std())
    lap = cv2.Laplacian(g, cv2.CV_32F)
    s0, s1 = g.shape
    centre = od[s0 // 4:3 * s0 // 4, s1 // 4:3 * s1 // 4]
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


def crop_features(pixels: np.ndarray, size: int | None = None) -> np.ndarray:
    """``N x S x S x 3`` crops (0..255, as the model sees them) -> ``N x len(FEATURES)`` float64.

    ``size``: take them on a ``size x size`` copy of each crop (``cv2.INTER_AREA``; :data:`SMALL` for cards
    of schema 3, which record it); None: on the crop as given (the cards before).

    >>> f = crop_features(np.zeros((2, 32, 32, 3), np.uint8))  # black: no light at all, "stain" everywhere
    >>> f.shape, round(float(f[0, FEATURES.index("exposure")]), 3), float(f[0, FEATURES.index("stained")])
    ((2, 11), -3.507, 1.0)
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 crops, got shape {pixels.shape}")
    if size is not None and pixels.shape[1:3] != (size, size):
        import cv2

        if pixels.dtype != np.uint8:  # the model's pixels are whole numbers: resize them as the device does (uint8)
            pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        pixels = [cv2.resize(np.ascontiguousarray(c), (size, size), interpolation=cv2.INTER_AREA) for c in pixels]
    return np.array([_one(c) for c in pixels], np.float64).reshape(len(pixels), len(FEATURES))
