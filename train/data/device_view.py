"""The device view: labelled frames through the device's own cell finder, as labelled finder crops.

The model is fitted on what the device sees. A frame whose cells are outlined (the
generator's fields with ``truth.json``, SIPaKMeD's cluster images with their
``NNN_cytNN.dat`` outlines) goes through :func:`edge_app.finder.find_cells`; each
detection is matched to an outline at mask IoU >= 0.5 (:mod:`edge_app.outline_match`).
A matched detection is a *labelled finder crop* (the outline's class); an unmatched one
is a *real device non-cell* (debris, an inflammatory cell, a clump, a cell cut by the
border). ``edge-convert`` fits the open-set score, its threshold, the temperature and
the per-class error rates on these crops (:mod:`convert.pipeline`).

Groups keep it honest: a cluster image is the group ``<class>/<NNN>`` of the crops cut
from it (the bundle's split names them), a field of ``truth.json`` the group
``fields/<stem>``; :func:`frames_of_groups` keeps the frames of the given groups only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytoedge.train.errors import DataError


@dataclass(frozen=True)
class LabelledFrame:
    image: Path
    group: str  # "<class>/<NNN>" (cluster image) or "fields/<stem>" (a field of truth.json)
    outlines: tuple[Path, ...]  # cytoplasm outline per labelled cell
    classes: tuple[str, ...]  # the class of each outline


@dataclass
class FinderCrops:
    """What the finder cut from labelled frames: BGR crops at full resolution, with their truth."""

    crops: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # class index, -1: matched no outline (a device non-cell)
    groups: list[str] = field(default_factory=list)
    frames: int = 0
    outlines: int = 0  # labelled cells in the frames

    @property
    def label_array(self) -> np.ndarray:
        return np.asarray(self.labels, np.int64)

    @property
    def matched(self) -> np.ndarray:
        return np.flatnonzero(self.label_array >= 0)

    @property
    def non_cells(self) -> np.ndarray:
        return np.flatnonzero(self.label_array < 0)

    def summary(self) -> str:
        return (f"{self.frames} frames, {self.outlines} outlined cells: {len(self.matched)} found by the finder "
                f"(IoU >= 0.5), {len(self.non_cells)} other detections")


def cluster_frames(root: Path) -> list[LabelledFrame]:
    """SIPaKMeD's (or the generator's) cluster images with their cytoplasm outlines; every cell has the
    class of its folder."""
    from cytoedge.train.data.sipakmed import scan_dataset

    index = scan_dataset(root, check_images=False)
    return [LabelledFrame(f.path, f"{f.class_name}/{f.path.stem}", tuple(f.cytoplasm), (f.class_name,) * len(f.cytoplasm))
            for f in index.frames if f.cytoplasm]


def truth_fields(folder: Path) -> list[LabelledFrame]:
    """The fields of a ``truth.json`` folder (``edge-train synth --fields``, ``write_slide``)."""
    truth_file = Path(folder) / "truth.json"
    if not truth_file.is_file():
        raise DataError(f"no truth.json in {folder}: pass a folder written by 'edge-train synth --fields N'")
    try:
        truth = json.loads(truth_file.read_text())
        return [LabelledFrame(Path(folder) / rec["image"], f"fields/{Path(rec['image']).stem}",
                              tuple(Path(folder) / c["cyt"] for c in rec["cells"]),
                              tuple(c["class"] for c in rec["cells"])) for rec in truth["fields"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{truth_file} is not a fields record ({type(exc).__name__}: {exc})") from None


def frames_of_groups(frames: list[LabelledFrame], groups: set[str]) -> list[LabelledFrame]:
    return [f for f in frames if f.group in groups]


def finder_crops(frames: list[LabelledFrame], class_names: list[str], finder_cfg=None,
                 iou: float | None = None) -> FinderCrops:
    """Run the device's finder on every frame and label its crops by their matched outline."""
    from cytoedge.edge_app.finder import FinderConfig, crops_of, find_cells
    from cytoedge.edge_app.outline_match import MATCH_IOU, greedy_matches, mask_ious
    from cytoedge.edge_app.outlines import read_outline
    from cytoedge.edge_app.sources import read_image

    cfg = finder_cfg or FinderConfig()
    index = {c: i for i, c in enumerate(class_names)}
    out = FinderCrops()
    for fr in frames:
        image, err = read_image(fr.image)
        if image is None:
            raise DataError(f"{fr.image}: {err}")
        unknown = sorted(set(fr.classes) - set(index))
        if unknown:
            raise DataError(f"{fr.image}: class {unknown[0]!r} is not one of the model's ({', '.join(class_names)})")
        polys = [read_outline(p) for p in fr.outlines]
        dets = find_cells(image, cfg)
        matches = greedy_matches(mask_ious(polys, [d.contour for d in dets], (image.shape[1], image.shape[0])),
                                 MATCH_IOU if iou is None else iou)
        label = dict.fromkeys(range(len(dets)), -1)
        for i, j, _ in matches:
            label[j] = index[fr.classes[i]]
        out.crops += crops_of(image, dets)
        out.labels += [label[j] for j in range(len(dets))]
        out.groups += [fr.group] * len(dets)
        out.frames += 1
        out.outlines += len(polys)
    return out
