"""How well edge_app's cell finder finds the cells: recall and precision at IoU >= 0.5.

    python -m cytoedge.benchmarks.finder_accuracy                       # makes 20 synthetic fields, then scores them
    python -m cytoedge.benchmarks.finder_accuracy --fields DATA/fields  # fields written by 'edge-train synth --fields N'

Ground truth is every labelled cell's cytoplasm outline (``*_cyt*.dat``) listed in
the fields' ``truth.json``. Each detection is matched to at most one cell, greedily
by decreasing IoU; a match needs IoU >= ``--iou``. Two IoUs are scored:

* **mask IoU** - the detection's outline filled, against the filled ``.dat`` outline;
* **box IoU** - the detection's box against the outline's bounding box.

Recall = matched cells / labelled cells; precision = matched detections / detections
(a detection on debris, an inflammatory cell or a merged clump counts against it).
With ``--model`` the crops of the matched cells are classified on-device as edge-app
does, and the class and clinical-group accuracy against the fields' truth is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.outline_match import box_iou, greedy_matches, mask_ious


@dataclass
class FieldScore:
    name: str
    cells: int
    detections: int
    matched_mask: int
    matched_box: int
    mean_mask_iou: float  # over mask matches
    finder_ms: float
    class_pairs: list[tuple[str, str]] = field(default_factory=list)  # (truth, predicted) of mask matches, --model


def field_matches(fields_dir: Path, iou: float = 0.5, finder_cfg=None):
    """Per field of ``truth.json``: (record, image, detections, mask matches, box matches, finder ms); a match is
    (truth cell index, detection index, IoU), greedy at IoU >= ``iou``."""
    from cytoedge.edge_app.finder import FinderConfig, find_cells
    from cytoedge.edge_app.outlines import read_outline
    from cytoedge.edge_app.sources import read_image

    truth_file = fields_dir / "truth.json"
    if not truth_file.is_file():
        raise CytoEdgeError(f"no truth.json in {fields_dir}: pass a folder written by 'edge-train synth --fields N'")
    truth = json.loads(truth_file.read_text())
    cfg = finder_cfg or FinderConfig()
    for rec in truth["fields"]:
        image, err = read_image(fields_dir / rec["image"])
        if image is None:
            raise CytoEdgeError(f"{fields_dir / rec['image']}: {err}")
        polys = [read_outline(fields_dir / c["cyt"]) for c in rec["cells"]]
        t0 = time.perf_counter()
        dets = find_cells(image, cfg)
        ms = (time.perf_counter() - t0) * 1e3
        size = (image.shape[1], image.shape[0])
        m_iou = mask_ious(polys, [d.contour for d in dets], size)
        tboxes = [c["bbox_xywh"] for c in rec["cells"]]
        b_iou = np.array([[box_iou(tb, d.box) for d in dets] for tb in tboxes]).reshape(len(tboxes), len(dets))
        yield rec, image, dets, greedy_matches(m_iou, iou), greedy_matches(b_iou, iou), ms


def labelled_finder_crops(fields_dir: Path, iou: float = 0.5, finder_cfg=None
                          ) -> list[tuple[str, str, np.ndarray]]:
    """(field image name, true class, BGR crop as edge-app cuts it) of every cell the finder matched."""
    from cytoedge.edge_app.finder import crops_of

    out = []
    for rec, image, dets, mm, _, _ in field_matches(fields_dir, iou, finder_cfg):
        crops = crops_of(image, [dets[j] for _, j, _ in mm]) if mm else []
        out += [(rec["image"], rec["cells"][i]["class"], c) for (i, _, _), c in zip(mm, crops)]
    return out


def score_fields(fields_dir: Path, iou: float = 0.5, finder_cfg=None, classifier=None) -> list[FieldScore]:
    """Score every field of ``truth.json``; with ``classifier`` also classify the matched cells' crops."""
    from cytoedge.edge_app.finder import crops_of

    scores = []
    for rec, image, dets, mm, bm, ms in field_matches(fields_dir, iou, finder_cfg):
        pairs = []
        if classifier is not None and mm:
            preds = classifier.classify(crops_of(image, [dets[j] for _, j, _ in mm]))
            pairs = [(rec["cells"][i]["class"], p.class_name) for (i, _, _), p in zip(mm, preds)]
        scores.append(FieldScore(rec["image"], len(rec["cells"]), len(dets), len(mm), len(bm),
                                 float(np.mean([v for _, _, v in mm])) if mm else 0.0, ms, pairs))
    return scores


def summarise(scores: list[FieldScore]) -> dict[str, float]:
    cells = sum(s.cells for s in scores)
    dets = sum(s.detections for s in scores)
    out = {"fields": len(scores), "cells": cells, "detections": dets}
    for kind in ("mask", "box"):
        m = sum(getattr(s, f"matched_{kind}") for s in scores)
        r, p = m / cells if cells else 0.0, m / dets if dets else 0.0
        out.update({f"{kind}_recall": r, f"{kind}_precision": p, f"{kind}_f1": 2 * r * p / (r + p) if r + p else 0.0})
    out["mean_mask_iou_of_matches"] = statistics.fmean(s.mean_mask_iou for s in scores) if scores else 0.0
    out["finder_ms_median"] = statistics.median(s.finder_ms for s in scores) if scores else 0.0
    pairs = [p for s in scores for p in s.class_pairs]
    if pairs:
        from cytoedge.edge_app.classes import group_of

        out["classified"] = len(pairs)
        out["class_accuracy"] = sum(t == p for t, p in pairs) / len(pairs)
        out["group_accuracy"] = sum(group_of(t) == group_of(p) for t, p in pairs) / len(pairs)
    return out


def _make_fields(n: int, seed: int, difficulty: float | None, folder: Path) -> Path:
    from cytoedge.train.data.synth import SynthOptions, generate

    kw = {} if difficulty is None else {"difficulty": difficulty}
    generate(SynthOptions(out=folder, per_class=5, frames=1, fields=n, seed=seed, **kw))
    return folder / "fields"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.finder_accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=Path, help="fields folder with truth.json (default: make synthetic ones)")
    p.add_argument("--n", type=int, default=20, help="synthetic fields to make when --fields is not given")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic fields (default: %(default)s)")
    p.add_argument("--difficulty", type=float, help="synthetic difficulty (default: the generator's)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU a match needs (default: %(default)s)")
    p.add_argument("--per-field", action="store_true", help="print a line per field")
    p.add_argument("--model", type=Path, help="also classify the matched cells with this edge-convert model folder")
    a = p.parse_args(argv)
    clf = None
    if a.model:
        from cytoedge.edge_app.classifier import Classifier

        clf = Classifier(a.model)
    with tempfile.TemporaryDirectory(prefix="finder-bench-") as tmp:
        fields = a.fields or _make_fields(a.n, a.seed, a.difficulty, Path(tmp) / "synth")
        scores = score_fields(fields, a.iou, classifier=clf)
    if a.per_field:
        for s in scores:
            print(f"{s.name}: {s.cells} cells, {s.detections} found, mask matches {s.matched_mask}, "
                  f"box matches {s.matched_box}, mean mask IoU {s.mean_mask_iou:.3f}, {s.finder_ms:.1f} ms")
    t = summarise(scores)
    print(f"cell finder on {t['fields']} fields ({t['cells']} labelled cells, {t['detections']} detections), "
          f"match at IoU >= {a.iou}:")
    print(f"  mask IoU: recall {t['mask_recall']:.3f}  precision {t['mask_precision']:.3f}  F1 {t['mask_f1']:.3f}"
          f"  (mean IoU of matches {t['mean_mask_iou_of_matches']:.3f})")
    print(f"  box IoU:  recall {t['box_recall']:.3f}  precision {t['box_precision']:.3f}  F1 {t['box_f1']:.3f}")
    print(f"  finder time per field: median {t['finder_ms_median']:.1f} ms")
    if "classified" in t:
        print(f"  {clf.card.architecture} {clf.format} on the {t['classified']} matched cells: class accuracy "
              f"{t['class_accuracy']:.3f}, clinical group accuracy {t['group_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
