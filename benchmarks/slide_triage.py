"""Slide-level triage: synthetic slides with known abnormal fractions through edge-app and its report.

    python -m cytoedge.benchmarks.slide_triage --model DIR --pool [--slides 5] [--sizes 2000,5000]
        [--pool-cells 3000 --pool-abnormal 600 | --pool-file FILE.npz] [--limit 0.5%] [--json FILE]
    python -m cytoedge.benchmarks.slide_triage --model DIR [--fractions 0,0.005,0.01,0.02,0.05] [--slides 2]
        [--cells 300] [--seed 0] [--work DIR] [--json FILE]

``--pool`` (realistic slides of 2 000-5 000 cells, fractions 0 to 10 %): the finder and the
classifier run once on a pool of labelled cells, and every slide is drawn from that cache
(:mod:`benchmarks.slide_pool`); per fraction it reports refer / review / no further
review, the estimate's error, whether its 95 % interval covers the truth, and precision
at K of the gallery. Without it, every slide goes through edge-app end to end:

Each slide holds exactly ``--cells`` labelled cells: ``round(fraction x cells)`` abnormal
ones (koilocytotic and dyskeratotic, alternately) and the rest normal and benign in the
proportions of the generator's slide mix, spread over 1280 x 960 fields written by
``train.data.synth.write_slide`` (with their ``truth.json``; debris and inflammatory
cells as usual). Every slide then goes through what a user runs: ``edge-app`` (the
finder, the classifier, the store; :func:`edge_app.app.run`) and ``edge-app report``
(:func:`edge_app.report.build_report` with the default triage rule).

It prints, per slide, the true and the reported abnormal fraction, the verdict and the
counting error per class (reported count - true count: the finder's misses and extra
detections, the classifier's errors and the cells rejected as unknown together), then
the triage rule's sensitivity (slides holding abnormal cells that are referred) and
specificity (slides without any that are not referred), overall and per fraction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.classes import ABNORMAL, SIPAKMED_CLASSES, SIPAKMED_GROUPS
from cytoedge.edge_app.clitools import run_cli
from cytoedge.edge_app.errors import CytoEdgeError

DEFAULT_FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.05)


def slide_classes(n: int, fraction: float) -> list[str]:
    """``n`` class names: ``round(fraction * n)`` abnormal (alternating), the rest in the slide mix's normal shares.

    >>> c = slide_classes(200, 0.02); len(c), Counter(SIPAKMED_GROUPS[x] for x in c)["abnormal"]
    (200, 4)
    """
    from cytoedge.train.data.synth import FIELD_MIX

    abnormal = [c for c in SIPAKMED_CLASSES if SIPAKMED_GROUPS[c] == ABNORMAL]
    others = {c: w for c, w in FIELD_MIX.items() if SIPAKMED_GROUPS[c] != ABNORMAL}
    n_ab = int(round(fraction * n))
    out = [abnormal[i % len(abnormal)] for i in range(n_ab)]
    rest, total = n - n_ab, sum(others.values())
    counts = {c: int(rest * w / total) for c, w in others.items()}
    for c in list(others)[: rest - sum(counts.values())]:  # the remainder, largest shares first
        counts[c] += 1
    for c, k in counts.items():
        out += [c] * k
    return out


def _truth_counts(folder: Path) -> Counter:
    truth = json.loads((folder / "truth.json").read_text())
    return Counter(cell["class"] for f in truth["fields"] for cell in f["cells"])


def run_slide(model: Path, folder: Path, store: Path, slide: str, threads: int) -> dict[str, Any]:
    """edge-app on the slide's fields, then its report (default triage rule); the report as a dict."""
    from cytoedge.edge_app.app import AppOptions, run
    from cytoedge.edge_app.report import TriageRule, build_report
    from cytoedge.edge_app.store import Store

    run(AppOptions(model=model, source=str(folder), slide=slide, out=store, threads=threads, save_crops="none"))
    with Store(store, create=False) as st:
        return build_report(st, slide, TriageRule())


def measure(model: Path, work: Path, fractions: Sequence[float], slides: int, cells: int, seed: int,
            threads: int, log: Any = print) -> dict[str, Any]:
    from cytoedge.train.data.synth import write_slide

    rows = []
    for fi, frac in enumerate(fractions):
        for rep in range(slides):
            slide = f"f{frac * 100:g}pct-{rep + 1}".replace(".", "p")
            folder = work / "slides" / slide
            t0 = time.perf_counter()
            write_slide(folder, slide_classes(cells, frac), seed + 1000 * fi + rep)
            truth = _truth_counts(folder)
            gen_s = time.perf_counter() - t0
            rep_ = run_slide(model, folder, work / "store", slide, threads)
            counted = {r["class"]: r["count"] for r in rep_["per_class"]}
            true_ab = sum(k for c, k in truth.items() if SIPAKMED_GROUPS[c] == ABNORMAL)
            row = {"slide": slide, "fraction": frac, "true_cells": sum(truth.values()), "true_abnormal": true_ab,
                   "true_fraction": true_ab / max(1, sum(truth.values())), "found_cells": rep_["cells"],
                   "reported_abnormal": rep_["per_group"]["abnormal"], "reported_unknown": rep_["per_group"]["unknown"],
                   "reported_fraction": rep_["abnormal_fraction"], "verdict": rep_["triage"]["verdict"],
                   "referred": rep_["triage"]["refer"], "reasons": rep_["triage"]["reasons"],
                   "count_error": {c: counted.get(c, 0) - truth.get(c, 0) for c in SIPAKMED_CLASSES},
                   "true_counts": {c: truth.get(c, 0) for c in SIPAKMED_CLASSES}, "generate_s": round(gen_s, 1)}
            rows.append(row)
            log(f"{slide}: {row['true_abnormal']} abnormal of {row['true_cells']} -> reported {row['reported_abnormal']} "
                f"of {row['found_cells']} found ({row['reported_unknown']} unknown): {row['verdict']}")
    return {"model": str(model), "cells_per_slide": cells, "slides_per_fraction": slides, "seed": seed,
            "rule": "edge_app.report.TriageRule() defaults", "slides": rows, "summary": summarize(rows)}


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pos = [r for r in rows if r["true_abnormal"] > 0]
    neg = [r for r in rows if r["true_abnormal"] == 0]
    per_fraction = {}
    for frac in sorted({r["fraction"] for r in rows}):
        sel = [r for r in rows if r["fraction"] == frac]
        per_fraction[f"{frac:g}"] = {"slides": len(sel), "referred": sum(r["referred"] for r in sel),
                                     "mean_true_fraction": sum(r["true_fraction"] for r in sel) / len(sel),
                                     "mean_reported_fraction": sum(r["reported_fraction"] for r in sel) / len(sel)}
    count = {}
    for c in SIPAKMED_CLASSES:
        errs = [r["count_error"][c] for r in rows]
        trues = [r["true_counts"][c] for r in rows]
        count[c] = {"mean_error": sum(errs) / len(errs), "mean_abs_error": sum(abs(e) for e in errs) / len(errs),
                    "mean_true": sum(trues) / len(trues),
                    "mean_abs_relative": (sum(abs(e) for e in errs) / max(1, sum(trues)))}
    return {"slides": len(rows), "positive_slides": len(pos), "negative_slides": len(neg),
            "sensitivity": _rate(sum(r["referred"] for r in pos), len(pos)),
            "specificity": _rate(sum(not r["referred"] for r in neg), len(neg)),
            "per_fraction": per_fraction, "count_error": count}


def render(res: dict[str, Any]) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    s = res["summary"]
    lines = ["| slide | true abnormal | cells found | reported abnormal | unknown | reported fraction | verdict |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['slide']} | {r['true_abnormal']} / {r['true_cells']} ({pct(r['true_fraction'])}) | {r['found_cells']} | "
              f"{r['reported_abnormal']} | {r['reported_unknown']} | {pct(r['reported_fraction'])} | {r['verdict']} |"
              for r in res["slides"]]
    lines += ["", f"Triage rule, per slide: sensitivity {pct(s['sensitivity'])} ({s['positive_slides']} slides with "
                  f"abnormal cells), specificity {pct(s['specificity'])} ({s['negative_slides']} without)", "",
              "| true abnormal fraction | slides | referred | mean reported abnormal fraction |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {float(f) * 100:g} % | {v['slides']} | {v['referred']} | {pct(v['mean_reported_fraction'])} |"
              for f, v in s["per_fraction"].items()]
    lines += ["", "| class | mean true count | mean error (reported - true) | mean absolute error | relative |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c} | {v['mean_true']:.1f} | {v['mean_error']:+.1f} | {v['mean_abs_error']:.1f} | "
              f"{pct(v['mean_abs_relative'])} |" for c, v in s["count_error"].items()]
    return "\n".join(lines) + "\n"


def _floats(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"fractions must lie in [0, 1], got {text!r}")
    return vals


def _sizes(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX cells, got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return lo, hi


POOL_FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10)


def _pool_main(a: argparse.Namespace) -> int:
    from cytoedge.benchmarks.slide_pool import Pool, build_pool, measure_pool, narrowing, render_narrowing, render_pool
    from cytoedge.edge_app.card import load_card
    from cytoedge.edge_app.classifier import choose_format
    from cytoedge.edge_app.report import TriageRule

    card = load_card(a.model)
    rates = card.artifact(choose_format(card)).error_rates
    if rates is None:
        raise CytoEdgeError(f"the model card in {a.model} has no error rates (an older card): run edge-convert again")
    rule = TriageRule(limit=a.limit, preparation=a.preparation)
    t0 = time.perf_counter()
    if a.pool_file and a.pool_file.is_file():
        pool = Pool.load(a.pool_file)
    else:
        with tempfile.TemporaryDirectory(prefix="slide-pool-") as tmp:
            pool = build_pool(a.model, Path(tmp), a.pool_cells, a.pool_abnormal, a.seed, a.threads)
        if a.pool_file:
            pool.save(a.pool_file)
    pool_s = time.perf_counter() - t0
    fractions = a.fractions if a.fractions != list(DEFAULT_FRACTIONS) else list(POOL_FRACTIONS)
    res = measure_pool(pool, rates, dict(card.class_groups), rule, fractions, max(a.slides, 5) if a.slides == 2 else a.slides,
                       a.sizes, a.seed)
    res.update({"model": str(a.model), "pool_detections": int(len(pool.truth)), "pool_s": round(pool_s, 1),
                "rule": {"limit": rule.limit, "preparation": rule.preparation, "needed": rule.adequacy_needed},
                "sizes": list(a.sizes), "narrowing": narrowing(rates, dict(card.class_groups))})
    print(render_pool(res))
    print("What would narrow the interval (expected counts under the card's confusion):\n")
    print(render_narrowing(res["narrowing"]))
    if a.json:
        atomic_write_json(a.json, res)
        print(f"wrote {a.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.slide_triage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder written by edge-convert")
    p.add_argument("--fractions", type=_floats, default=list(DEFAULT_FRACTIONS),
                   help="true abnormal fractions of the slides (default: 0,0.005,0.01,0.02,0.05)")
    p.add_argument("--slides", type=int, default=2, help="slides per fraction (default: %(default)s)")
    p.add_argument("--cells", type=int, default=300, help="labelled cells per slide (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, help="keep the slides and the store here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write every figure here")
    g = p.add_argument_group("--pool: realistic slides drawn from cached device outputs")
    g.add_argument("--pool", action="store_true", help="draw slides of --sizes cells from a pool (see above)")
    g.add_argument("--sizes", type=_sizes, default=(2000, 5000), help="cells per drawn slide, MIN,MAX (default 2000,5000)")
    g.add_argument("--pool-cells", type=int, default=3000, help="normal and benign cells in the pool (default 3000)")
    g.add_argument("--pool-abnormal", type=int, default=600, help="abnormal cells in the pool (default 600)")
    g.add_argument("--pool-file", type=Path, help="read the pool from (or, when missing, write it to) this .npz")
    g.add_argument("--limit", type=float, default=0.005, help="the lab's limit on the corrected fraction (default 0.005)")
    g.add_argument("--preparation", default="liquid-based",
                   help="adequacy threshold of the drawn slides (default liquid-based: 2 000 cells)")
    a = p.parse_args(argv)
    if a.pool:
        return _pool_main(a)
    if a.slides < 1 or a.cells < 1:
        raise CytoEdgeError("--slides and --cells must be at least 1")
    if a.work is not None and a.work.exists() and any(a.work.iterdir()):
        raise CytoEdgeError(f"--work {a.work} is not empty: choose a new folder")
    work = a.work or Path(tempfile.mkdtemp(prefix="slide-triage-"))
    try:
        res = measure(a.model, work, a.fractions, a.slides, a.cells, a.seed, a.threads)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(render(res))
    if a.json:
        atomic_write_json(a.json, res)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(run_cli("cytoedge.benchmarks.slide_triage", main))
