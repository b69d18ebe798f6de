"""Slide triage at realistic size from a cache of per-cell device outputs (``benchmarks.slide_triage --pool``).

A real slide holds thousands of cells; running the finder and the classifier on
30 slides of 2 000-5 000 cells takes hours on two cores. Instead, a *pool* of labelled
cells is made once: synthetic slides (``train.data.synth.write_slide``: normal and benign
cells in the slide mix, and apart from them abnormal ones, with debris and inflammatory
cells as usual) go through the device's own finder and classifier
(:mod:`train.data.device_view`, :class:`edge_app.classifier.Classifier`), and every
detection is cached with its truth (the outline it matched, or none: a non-cell), the
device's verdict (group or unknown) and its calibrated abnormal probability. Each test
slide is then *drawn* from the pool: ``round(fraction x n)`` abnormal cells and the rest
normal/benign, with replacement, plus the pool's share of non-cell detections; its
estimate, interval and verdict are computed exactly as ``edge-app report`` does
(:func:`edge_app.report.slide_verdict`). Drawing with replacement repeats cells on
slides larger than the pool: the counts vary as on a real slide, the cells' looks less.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.classes import ABNORMAL, GROUPS, SIPAKMED_CLASSES, SIPAKMED_GROUPS, UNKNOWN


@dataclass
class Pool:
    truth: np.ndarray  # per detection: "normal"/"benign"/"abnormal" of the matched outline, "" for a non-cell
    called: np.ndarray  # the device's group, or "unknown"
    p_abnormal: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, truth=self.truth, called=self.called, p_abnormal=self.p_abnormal)

    @classmethod
    def load(cls, path: Path) -> "Pool":
        d = np.load(path, allow_pickle=False)
        return cls(d["truth"], d["called"], d["p_abnormal"])


def build_pool(model: Path, work: Path, normal_cells: int, abnormal_cells: int, seed: int, threads: int,
               log: Any = print) -> Pool:
    """Write the pool's slides into ``work``, run the device on them, cache every detection."""
    from cytoedge.benchmarks.slide_triage import slide_classes
    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.train.data.device_view import finder_crops, truth_fields
    from cytoedge.train.data.synth import write_slide

    clf = Classifier(model, threads=threads)
    abnormal = [c for c in SIPAKMED_CLASSES if SIPAKMED_GROUPS[c] == ABNORMAL]
    parts = [("normal", slide_classes(normal_cells, 0.0)), ("abnormal", [abnormal[i % 2] for i in range(abnormal_cells)])]
    truth, called, p_ab = [], [], []
    for k, (name, classes) in enumerate(parts):
        folder = work / f"pool-{name}"
        write_slide(folder, classes, seed + 7919 * k)
        fc = finder_crops(truth_fields(folder), clf.class_names)
        for start in range(0, len(fc.crops), 256):
            preds = clf.classify(fc.crops[start:start + 256])
            for lab, p in zip(fc.labels[start:start + 256], preds):
                truth.append(SIPAKMED_GROUPS[clf.class_names[lab]] if lab >= 0 else "")
                called.append(p.group)
                p_ab.append(p.p_abnormal)
        log(f"pool {name}: {fc.summary()}")
    return Pool(np.array(truth), np.array(called), np.array(p_ab, np.float64))


def draw_slide(pool: Pool, n: int, fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` labelled cells (``round(fraction n)`` abnormal) plus non-cell detections at the pool's rate."""
    cells = np.flatnonzero(pool.truth != "")
    ab = cells[pool.truth[cells] == ABNORMAL]
    ok = cells[pool.truth[cells] != ABNORMAL]
    non = np.flatnonzero(pool.truth == "")
    n_ab = int(round(fraction * n))
    n_non = int(rng.binomial(n, len(non) / max(1, len(cells)))) if len(non) else 0
    # a labelled cell the finder missed is not in the pool: draw found cells, the finder's recall is in the pool's
    # size; the slide holds n labelled cells found by the finder
    idx = np.concatenate([rng.choice(ab, n_ab), rng.choice(ok, n - n_ab), rng.choice(non, n_non) if n_non else []])
    idx = idx.astype(np.int64)
    return {"truth": pool.truth[idx], "called": pool.called[idx], "p_abnormal": pool.p_abnormal[idx]}


def judge(slide: dict[str, np.ndarray], rates: dict[str, Any], class_groups: dict[str, str], rule: Any,
          ks: tuple[int, ...] = (10, 30)) -> dict[str, Any]:
    """The report's verdict on a drawn slide, and precision at K of its gallery."""
    from cytoedge.edge_app.report import slide_verdict
    from cytoedge.edge_app.store import SlideCounts

    per_group = {g: int((slide["called"] == g).sum()) for g in GROUPS}
    counts = SlideCounts("drawn", "", list(SIPAKMED_CLASSES), class_groups, 1, int(len(slide["called"])), {},
                         per_group, runs=[{"model_sha256": "pool", "settings": {"error_rates": rates}}])
    v = slide_verdict(counts, rule)
    kept = slide["called"] != UNKNOWN
    order = np.argsort(-slide["p_abnormal"][kept], kind="stable")
    truth_kept = slide["truth"][kept][order]
    labelled = slide["truth"] != ""
    true_fraction = float((slide["truth"][labelled] == ABNORMAL).mean())
    prec = {f"precision_at_{k}": float((truth_kept[:k] == ABNORMAL).mean()) if len(truth_kept) else 0.0 for k in ks}
    abnormal_n = int((slide["truth"] == ABNORMAL).sum())
    best = {f"best_at_{k}": min(1.0, abnormal_n / k) for k in ks}  # what a perfect gallery would reach
    est = v["estimate"] or {}
    return {"cells": int(labelled.sum()), "detections": int(len(slide["truth"])), "true_fraction": true_fraction,
            "verdict": v["verdict"], "estimate": est.get("abnormal_fraction"), "low": est.get("low"),
            "high": est.get("high"), "raw_fraction": est.get("raw_fraction"),
            "covered": bool(est and est["low"] - 1e-9 <= true_fraction <= est["high"] + 1e-9),
            "adequate": v["adequacy"]["adequate"], **prec, **best}


def measure_pool(pool: Pool, rates: dict[str, Any], class_groups: dict[str, str], rule: Any, fractions: list[float],
                 slides: int, sizes: tuple[int, int], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = []
    for frac in fractions:
        for rep in range(slides):
            n = int(rng.integers(sizes[0], sizes[1] + 1))
            row = judge(draw_slide(pool, n, frac, rng), rates, class_groups, rule)
            rows.append({"fraction": frac, "slide": rep + 1, **row})
    return {"rows": rows, "summary": summarize_pool(rows)}


def summarize_pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per = {}
    for frac in sorted({r["fraction"] for r in rows}):
        sel = [r for r in rows if r["fraction"] == frac]
        per[f"{frac:g}"] = {
            "slides": len(sel), "refer": sum(r["verdict"] == "refer" for r in sel),
            "review": sum(r["verdict"] == "review" for r in sel),
            "no_further_review": sum(r["verdict"] == "no further review" for r in sel),
            "mean_abs_error": float(np.mean([abs(r["estimate"] - r["true_fraction"]) for r in sel])),
            "mean_raw_fraction": float(np.mean([r["raw_fraction"] for r in sel])),
            "mean_estimate": float(np.mean([r["estimate"] for r in sel])),
            "mean_width": float(np.mean([r["high"] - r["low"] for r in sel])),
            "covered": sum(r["covered"] for r in sel),
            "precision_at_10": float(np.mean([r["precision_at_10"] for r in sel])),
            "precision_at_30": float(np.mean([r["precision_at_30"] for r in sel])),
            "best_at_10": float(np.mean([r["best_at_10"] for r in sel])),
            "best_at_30": float(np.mean([r["best_at_30"] for r in sel]))}
    normal = [r for r in rows if r["fraction"] == 0]
    return {"slides": len(rows), "per_fraction": per,
            "coverage": sum(r["covered"] for r in rows) / len(rows) if rows else None,
            "normal_no_further_review": (sum(r["verdict"] == "no further review" for r in normal) / len(normal))
            if normal else None}


def render_pool(res: dict[str, Any]) -> str:
    s = res["summary"]
    lines = ["| true abnormal | slides | refer | review | no further review | raw called abnormal | estimate | "
             "mean abs error | mean interval width | interval covers | precision@10 (best) | precision@30 (best) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f, v in s["per_fraction"].items():
        lines.append(f"| {100 * float(f):g} % | {v['slides']} | {v['refer']} | {v['review']} | {v['no_further_review']} | "
                     f"{100 * v['mean_raw_fraction']:.2f} % | {100 * v['mean_estimate']:.2f} % | "
                     f"{100 * v['mean_abs_error']:.2f} pts | {100 * v['mean_width']:.2f} pts | {v['covered']}/{v['slides']} | "
                     f"{v['precision_at_10']:.2f} ({v['best_at_10']:.2f}) | {v['precision_at_30']:.2f} ({v['best_at_30']:.2f}) |")
    nfr = s["normal_no_further_review"]
    lines += ["", f"Intervals cover the true fraction on {100 * s['coverage']:.0f} % of {s['slides']} slides; "
                  f"normal slides given no further review: {'-' if nfr is None else f'{100 * nfr:.0f} %'}."]
    return "\n".join(lines) + "\n"


NARROWING = (("this card", 1, None), ("10x the validation cells", 10, None), ("100x the validation cells", 100, None),
             ("per-cell specificity 99 %", 1, 0.99), ("specificity 99 % and 10x the cells", 10, 0.99))


def narrowing(rates: dict[str, Any], class_groups: dict[str, str], sizes: tuple[int, ...] = (5000, 20000),
              fractions: tuple[float, ...] = (0.0, 0.05), draws: int = 1000) -> list[dict[str, Any]]:
    """What would narrow the interval: the interval of slides with the expected counts under the card's confusion,
    with its validation counts multiplied, or its false-abnormal rate of normal and benign cells set to 1 %."""
    from cytoedge.edge_app.estimate import ErrorRates, estimate

    base = ErrorRates.from_card(rates, class_groups)
    t = base.groups.index(ABNORMAL)
    out = []
    for name, scale, spec in NARROWING:
        cnt = base.counts.astype(np.float64) * scale
        if spec is not None:
            for i in range(len(base.groups)):
                if i != t:
                    tot, wrong = cnt[i].sum(), cnt[i, t]
                    cnt[i, i] += wrong - (1 - spec) * tot
                    cnt[i, t] = (1 - spec) * tot
        cnt = np.round(cnt).astype(np.int64)
        conf = cnt / cnt.sum(axis=1, keepdims=True)
        share = base.counts.sum(axis=1).astype(np.float64)
        share[t] = 0.0
        share /= share.sum()  # the non-abnormal groups in the validation mix
        row = {"case": name, "validation_cells": int(cnt.sum())}
        for n in sizes:
            for frac in fractions:
                p = share * (1 - frac)
                p[t] = frac
                e = estimate(np.round(n * p @ conf), ErrorRates(base.groups, cnt), draws=draws)
                row[f"{100 * frac:g}% of {n}"] = [round(e.low, 4), round(e.high, 4)]
        out.append(row)
    return out


def render_narrowing(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k not in ("case", "validation_cells")]
    lines = ["| 95 % interval of a slide at | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    lines += [f"| {r['case']} ({r['validation_cells']} validation cells) | "
              + " | ".join(f"{100 * r[k][0]:.1f}-{100 * r[k][1]:.1f} %" for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
