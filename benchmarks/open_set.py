"""Open-set rejection and calibrated confidence of a converted model, measured on data it never saw.

    python -m cytoedge.benchmarks.open_set --model DIR --cells HELDOUT --ood DATA/ood [DATA/negatives ...]
        [--formats tflite-int8,tflite-fp32] [--scores all] [--ranks 8,32,128] [--json FILE]

For every device artifact of ``DIR`` it runs, as ``edge-app`` does (the device's
Classifier: preprocessing, quantisation, batching), the bundle's training and
validation crops (the data the conversion fitted on, from ``DIR/bundle/split.json``),
the held-out cells of ``--cells`` (a labelled tree none of the fitting saw) and every
non-cell kind of each ``--ood`` folder (one sub-folder per kind). Then, per candidate
score (``edge_app.rejection.SCORES``; Mahalanobis at each ``--ranks``), fitted exactly
as edge-convert fits it, and for the score the card holds (``card``):

* AUROC, held-out cells against all non-cells (scikit-learn);
* per kind, the share of non-cells rejected at the threshold that rejects at most
  ``--cell-rejection`` (5 %) of the held-out cells - the score's quality, threshold aside;
* the held-out cells and per-kind non-cells rejected at the *deployed* threshold
  (fitted on the validation split, as in the card) - what the device does.

And, per artifact: held-out accuracy, accuracy of the cells kept, and the ECE of the
raw and of the calibrated (card temperature) confidence on the held-out cells.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.clitools import run_cli
from cytoedge.edge_app.errors import CytoEdgeError

DEVICE_FORMATS = ("tflite-int8", "tflite-fp32")


@dataclass
class Outputs:
    logits: np.ndarray
    emb: np.ndarray
    image: np.ndarray  # edge_app.crop_features of the crops as the model sees them
    labels: np.ndarray | None = None


def _read_all(paths: Sequence[Path]) -> list[np.ndarray]:
    from cytoedge.edge_app.crops import read_crop

    out = []
    for p in paths:
        img, why = read_crop(p)
        if img is None:
            raise CytoEdgeError(f"cannot read {p} ({why}): remove it or restore the data folder")
        out.append(img)
    return out


def kinds_of(folder: Path) -> dict[str, list[Path]]:
    """``{set/kind: images}``: one kind per sub-folder holding images, or the folder itself."""
    from cytoedge.edge_app.crops import crop_files

    if not folder.is_dir():
        raise CytoEdgeError(f"--ood {folder} is not a folder: pass e.g. demo/data/ood (made by edge-train synth)")
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subs:
        return {folder.name: crop_files([folder])}
    return {f"{folder.name}/{d.name}": crop_files([d]) for d in subs}


def fitting_sets(model: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray]:
    """The bundle's training and validation images (what edge-convert fitted on), from the model folder's copy."""
    split_file = model / "bundle" / "split.json"
    if not split_file.is_file():
        raise CytoEdgeError(f"{split_file} is missing: pass a model folder written by edge-convert")
    split = json.loads(split_file.read_text())
    root = Path(split["root"])
    if not root.is_dir():
        raise CytoEdgeError(f"the bundle's images are in {root}, which does not exist: restore that data folder")
    parts = [([root / r[0] for r in split[k]], np.array([int(r[1]) for r in split[k]], np.int64)) for k in ("train", "val")]
    return parts[0][0], parts[0][1], parts[1][0], parts[1][1]


def _outputs(clf: Any, images: list[np.ndarray], labels: np.ndarray | None = None) -> Outputs:
    from cytoedge.edge_app.crop_features import crop_features

    px = clf.pixels(images)
    logits, emb = clf.outputs_of(px)
    # the picture statistics at the card's size (64 px for schema 3), so the card's own score and the refitted
    # candidates see what the device computes
    return Outputs(np.asarray(logits, np.float64), np.asarray(emb, np.float64),
                   crop_features(px, clf.open_set.image_size), labels)


def candidates(card_score: Any, scores: Sequence[str], ranks: Sequence[int]) -> list[tuple[str, str, int]]:
    """``(label, score, rank)`` per candidate; ``card`` is the card's own fitted score."""
    out = [("card", card_score.score, -1)]
    for s in scores:
        if s.startswith("mahalanobis"):
            out += [(f"{s}-r{r}", s, r) for r in ranks]
        else:
            out.append((s, s, 0))
    return out


def measure_artifact(clf: Any, data: dict[str, Any], scores: Sequence[str], ranks: Sequence[int],
                     cell_rejection: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from cytoedge.edge_app import confidence
    from cytoedge.edge_app.rejection import fit_open_set

    k = len(clf.class_names)
    fit = _outputs(clf, data["fit"], data["fit_labels"])
    val = _outputs(clf, data["val"])
    cells = _outputs(clf, data["cells"], data["cell_labels"])
    kinds = {name: _outputs(clf, imgs) for name, imgs in data["kinds"].items()}
    result: dict[str, Any] = {"format": clf.format, "candidates": {}}
    for label, score, rank in candidates(clf.open_set, scores, ranks):
        s = clf.open_set if label == "card" else fit_open_set(
            score, fit.logits, fit.emb, fit.labels, val.logits, val.emb, k, train_image=fit.image, val_image=val.image,
            cell_rejection=cell_rejection, rank=max(rank, 1))
        c = s(cells.logits, cells.emb, cells.image)
        per_kind = {name: s(o.logits, o.emb, o.image) for name, o in kinds.items()}
        non = np.concatenate(list(per_kind.values()))
        at5 = float(np.quantile(c, 1.0 - cell_rejection, method="higher"))
        result["candidates"][label] = {
            "score": score, "rank": s.fitted.get("rank"),
            "auroc": float(roc_auc_score(np.r_[np.zeros(len(c)), np.ones(len(non))], np.r_[c, non])),
            "threshold_at_heldout": at5,
            "heldout_cells_rejected_at_heldout": float((c > at5).mean()),
            "rejected_at_heldout": {n: float((v > at5).mean()) for n, v in per_kind.items()},
            "threshold_deployed": float(s.threshold),
            "heldout_cells_rejected_deployed": float((c > s.threshold).mean()),
            "rejected_deployed": {n: float((v > s.threshold).mean()) for n, v in per_kind.items()},
        }
    pred = cells.logits.argmax(1)
    kept = ~clf.open_set.unknown(cells.logits, cells.emb, cells.image)
    raw, cal = confidence.softmax(cells.logits), confidence.softmax(cells.logits, clf.temperature)
    result["heldout"] = {
        "n": int(len(pred)), "accuracy": float((pred == cells.labels).mean()),
        "kept": float(kept.mean()), "accuracy_of_kept": float((pred[kept] == cells.labels[kept]).mean()) if kept.any() else None,
        "temperature": clf.temperature,
        "ece_raw": confidence.expected_calibration_error(raw, cells.labels),
        "ece_calibrated": confidence.expected_calibration_error(cal, cells.labels),
        "card_validation_ece_before": clf.entry.calibration.get("ece_before"),
        "card_validation_ece_after": clf.entry.calibration.get("ece_after"),
        "reliability_raw": confidence.reliability(raw, cells.labels),
        "reliability_calibrated": confidence.reliability(cal, cells.labels),
    }
    result["kinds"] = {n: len(v) for n, v in data["kinds"].items()}
    return result


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join(["| " + line(head) + " |", "| " + " | ".join("-" * w for w in widths) + " |",
                      *("| " + line(r) + " |" for r in rows)])


def render(res: dict[str, Any]) -> str:
    """Markdown tables per artifact: candidates (AUROC, rejection), per-kind rejection, calibration."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    out = []
    for fmt, r in res["artifacts"].items():
        cands = r["candidates"]
        kinds = list(r["kinds"])
        out.append(f"\n## {fmt}: open-set candidates (held-out cells vs {sum(r['kinds'].values())} non-cells)\n")
        head = ["candidate", "AUROC", "non-cells rejected % (cells <=5 %)", "worst kind %",
                "held-out cells rejected % (deployed thr)", "non-cells rejected % (deployed thr)"]
        rows = []
        for name, c in cands.items():
            at = c["rejected_at_heldout"]
            dep = c["rejected_deployed"]
            n_all = sum(r["kinds"][k] for k in kinds)
            mean_at = sum(at[k] * r["kinds"][k] for k in kinds) / n_all
            mean_dep = sum(dep[k] * r["kinds"][k] for k in kinds) / n_all
            worst = min(kinds, key=lambda k: at[k])
            rows.append([f"{name} ({c['score']})" if name == "card" else name, f"{c['auroc']:.4f}", pct(mean_at),
                         f"{pct(at[worst])} ({worst.split('/')[-1]})", pct(c["heldout_cells_rejected_deployed"]),
                         pct(mean_dep)])
        out.append(_table(head, rows))
        out.append(f"\n{fmt}: non-cells rejected per kind, % (threshold: at most 5 % of held-out cells rejected)\n")
        names = list(cands)
        out.append(_table(["kind", "n", *names], [[k, str(r["kinds"][k]), *(pct(cands[n]["rejected_at_heldout"][k])
                                                                            for n in names)] for k in kinds]))
        card = cands["card"]
        out.append(f"\n{fmt}: the card's score ({card['score']}) at its deployed threshold {card['threshold_deployed']:.4g}"
                   f" (validation split): held-out cells rejected {pct(card['heldout_cells_rejected_deployed'])} %\n")
        out.append(_table(["kind", "n", "rejected %"], [[k, str(r["kinds"][k]), pct(card["rejected_deployed"][k])]
                                                       for k in kinds]))
        h = r["heldout"]
        out.append(f"\n{fmt}: held-out cells {h['n']}: accuracy {pct(h['accuracy'])} %, kept {pct(h['kept'])} %, "
                   f"accuracy of kept {pct(h['accuracy_of_kept'])} %; ECE raw {h['ece_raw']:.3f} -> calibrated "
                   f"{h['ece_calibrated']:.3f} (T = {h['temperature']:.3f}; on the validation split it was fitted on: "
                   f"{h['card_validation_ece_before']:.3f} -> {h['card_validation_ece_after']:.3f})")
    return "\n".join(out) + "\n"


def run(model: Path, cells: Path, ood: Sequence[Path], formats: Sequence[str], scores: Sequence[str],
        ranks: Sequence[int], cell_rejection: float, threads: int) -> dict[str, Any]:
    from cytoedge.benchmarks.accuracy import load_labelled
    from cytoedge.edge_app.card import load_card
    from cytoedge.edge_app.classifier import Classifier

    card = load_card(model)
    names = list(card.class_names)
    held = load_labelled(cells, names)
    fit_paths, fit_labels, val_paths, _ = fitting_sets(model, names)
    kinds = {}
    for folder in ood:
        kinds.update(kinds_of(Path(folder)))
    data = {"fit": _read_all(fit_paths), "fit_labels": fit_labels, "val": _read_all(val_paths),
            "cells": _read_all(held.paths), "cell_labels": held.labels,
            "kinds": {k: _read_all(v) for k, v in kinds.items()}}
    res: dict[str, Any] = {"model": str(model), "architecture": card.architecture, "cells": str(cells),
                           "ood": [str(o) for o in ood], "cell_rejection": cell_rejection, "artifacts": {}}
    for fmt in formats:
        if fmt not in card.artifacts:
            continue
        clf = Classifier(model, fmt, threads=threads, allow_rejected=True)
        res["artifacts"][fmt] = measure_artifact(clf, data, scores, ranks, cell_rejection)
    if not res["artifacts"]:
        raise CytoEdgeError(f"the model card in {model} has none of the formats {', '.join(formats)}")
    return res


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    from cytoedge.edge_app.rejection import SCORES

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.open_set", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder written by edge-convert")
    p.add_argument("--cells", type=Path, required=True, help="held-out labelled cells (e.g. demo/heldout)")
    p.add_argument("--ood", type=Path, nargs="+", required=True, help="non-cell folders, one sub-folder per kind")
    p.add_argument("--formats", type=_csv, default=list(DEVICE_FORMATS), help="artifacts (default: %(default)s)")
    p.add_argument("--scores", type=_csv, default=list(SCORES), help="candidate scores (default: all)")
    p.add_argument("--ranks", type=lambda t: [int(v) for v in _csv(t)], default=[8, 32, 128],
                   help="ranks of the embedding's Mahalanobis part to try (default: %(default)s)")
    p.add_argument("--cell-rejection", type=float, default=0.05, help="held-out cells a threshold may reject")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="write every figure here")
    a = p.parse_args(argv)
    bad = [s for s in a.scores if s not in SCORES]
    if bad:
        raise CytoEdgeError(f"--scores: unknown {', '.join(bad)}; choose from {', '.join(SCORES)}")
    res = run(a.model, a.cells, a.ood, a.formats, a.scores, a.ranks, a.cell_rejection, a.threads)
    print(render(res))
    if a.json:
        atomic_write_json(a.json, res)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(run_cli("cytoedge.benchmarks.open_set", main))
