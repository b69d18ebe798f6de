"""A simulated operator at a manual microscope: is every cell counted once, and only from sharp still frames?

    python -m cytoedge.benchmarks.live_stage --model demo/models/lite0
    python -m cytoedge.benchmarks.live_stage --model M --quick        # a smaller slide and path, for a check

One large synthetic slide (``--slide-size``, default 8000x6000, with its ``truth.json``) is
imaged by a 1280x960 camera window (:mod:`train.data.synth_operator`) that rests on a serpentine
path of 4x3 fields (20 % overlap), then passes over the first row again; moves have motion blur,
every third rest starts out of focus, every frame has sensor noise. Each operator runs through
``edge_app.run`` with ``--stage manual`` (a fake live source, as fast as the app takes frames) into
a real store; the figures come from the store and the truth:

* **counted once**: the stored cells matched to true cells (the cell's centre in slide
  coordinates inside a true cell's box); *duplicates* = a true cell recorded from more than one
  field (the stage's error), as a share of the true cells counted; a cell the finder cuts in two
  within one field is the finder's own (*finder splits*, reported apart);
* **misses beyond the finder's own**: the true cells wholly inside the covered area that the
  finder finds on a clean still frame of some rest that holds them, but that the record lacks;
* **frames counted in motion or out of focus**: fields whose frame moved or had a defocus over
  1 px (the simulation's truth);
* **coverage**: the area of the union of the recorded fields against the union of the windows
  the operator truly rested on;
* **same record**: each operator once with 1 s and once with 20 s rests; the fixed stage (every
  frame a record, as before) on the same frames is counted with the finder alone.

It also times what a manual stage adds per frame (tracking, focus), and the classifier's int8
invocation per crop on this host, for the Pi 4 estimate in docs/live-stage.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.errors import CytoEdgeError

OPERATORS = {"slow": {"move_s": 1.5}, "fast": {"move_s": 0.6}}
RESTS = (1.0, 20.0)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def make_slide(folder: Path, size: tuple[int, int], seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The slide (cells at half the generator's field capacity), written once into ``folder``."""
    from cytoedge.train.data.synth import FIELD_MIX, field_capacity, write_slide
    from cytoedge.train.data.synth_operator import load_slide

    if not (folder / "truth.json").is_file():
        names, p = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
        n = field_capacity(size) // 2
        classes = [names[i] for i in np.random.default_rng(seed).choice(len(names), size=n, p=p)]
        write_slide(folder, classes, seed, per_field=n, frame_size=size)
    cells = json.loads((folder / "truth.json").read_text())["fields"][0]["cells"]
    return load_slide(folder), cells


def _centre_hits(boxes: list[tuple[float, float, float, float]], truth: np.ndarray) -> list[int | None]:
    """For each box (slide px), the true cell whose box holds its centre (the nearest centre if several)."""
    out: list[int | None] = []
    for x, y, w, h in boxes:
        cx, cy = x + w / 2, y + h / 2
        inside = np.flatnonzero((truth[:, 0] <= cx) & (cx <= truth[:, 0] + truth[:, 2])
                                & (truth[:, 1] <= cy) & (cy <= truth[:, 1] + truth[:, 3]))
        if len(inside) == 0:
            out.append(None)
            continue
        d = np.hypot(truth[inside, 0] + truth[inside, 2] / 2 - cx, truth[inside, 1] + truth[inside, 3] / 2 - cy)
        out.append(int(inside[np.argmin(d)]))
    return out


def _inside_union(truth: np.ndarray, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Boolean per true cell: wholly inside one of the rectangles."""
    ok = np.zeros(len(truth), bool)
    for x, y, w, h in rects:
        ok |= (truth[:, 0] >= x) & (truth[:, 1] >= y) & (truth[:, 0] + truth[:, 2] <= x + w) \
            & (truth[:, 1] + truth[:, 3] <= y + h)
    return ok


def finder_baseline(slide: np.ndarray, op: Any, truth: np.ndarray, finder: Any) -> set[int]:
    """The true cells the finder finds on a clean still frame (noise, no blur) of some rest that holds them whole."""
    from cytoedge.edge_app.finder import find_cells
    from cytoedge.train.data.synth_operator import FrameTruth, render_frame

    found: set[int] = set()
    rng = np.random.default_rng(op.seed + 99)
    w, h = op.window
    for x, y in dict.fromkeys(op.path()):
        frame = render_frame(slide, FrameTruth(0, x, y, False, 0.0, 0), None, op, rng)
        boxes = [(d.box[0] + x, d.box[1] + y, d.box[2], d.box[3]) for d in find_cells(frame, finder)]
        whole = _inside_union(truth, [(x, y, w, h)])
        found |= {i for i in _centre_hits(boxes, truth) if i is not None and whole[i]}
    return found


def fixed_stage_cells(slide: np.ndarray, op: Any, finder: Any) -> int:
    """The cells a fixed stage (every frame one record, edge-app before --stage manual) would store."""
    from cytoedge.edge_app.finder import find_cells
    from cytoedge.train.data.synth_operator import OperatorSource

    return sum(len(find_cells(f.image, finder)) for f in OperatorSource(slide, op))


def run_operator(model: Path, slide: np.ndarray, op: Any, truth: np.ndarray, store: Path, slide_id: str,
                 threads: int, baseline: set[int]) -> dict[str, Any]:
    from cytoedge.edge_app.app import AppOptions, run
    from cytoedge.edge_app.stage import coverage_area
    from cytoedge.train.data.synth_operator import OperatorSource

    src = OperatorSource(slide, op)
    plan = src.plan
    t0 = time.perf_counter()
    s = run(AppOptions(model=model, source="", slide=slide_id, out=store, threads=threads, stage="manual"),
            source=src)
    seconds = time.perf_counter() - t0
    ox, oy = plan[0].x, plan[0].y  # slide coordinates start at the first frame's corner
    conn = sqlite3.connect(store / "cytoedge.sqlite")
    try:
        fields = conn.execute("SELECT name, stage_x, stage_y, width, height FROM frames WHERE slide_id = ? "
                              "ORDER BY seq", (slide_id,)).fetchall()
        cells = conn.execute("SELECT slide_x, slide_y, w, h, frame_id FROM cells WHERE slide_id = ?",
                             (slide_id,)).fetchall()
    finally:
        conn.close()
    bad = 0
    for name, *_ in fields:
        t = plan[int(name.rsplit("#", 1)[1])]
        bad += t.moving or not t.in_focus
    w, h = op.window
    rested = [(t.x, t.y, w, h) for t in plan if t.rest >= 0]
    true_area = coverage_area(list(dict.fromkeys(rested)))
    est_area = coverage_area([(x + ox, y + oy, fw, fh) for _, x, y, fw, fh in fields])
    hits = _centre_hits([(x + ox, y + oy, cw, ch) for x, y, cw, ch, _ in cells], truth)
    matched = [i for i in hits if i is not None]
    unique = set(matched)
    fields_of: dict[int, set[int]] = {}
    for i, c in zip(hits, cells):
        if i is not None:
            fields_of.setdefault(i, set()).add(c[4])
    across = sum(len(f) - 1 for f in fields_of.values())  # one true cell recorded from two fields: the stage's
    covered = _inside_union(truth, list(dict.fromkeys(rested)))
    base = {i for i in baseline if covered[i]}
    missed = base - unique
    rests = len({t.rest for t in plan if t.rest >= 0})
    return {"slide": slide_id, "operator": asdict(op), "frames": len(plan), "rests": rests,
            "fields_recorded": len(fields), "fields_in_motion_or_blurred": int(bad),
            "cells_recorded": len(cells), "on_a_true_cell": len(matched), "true_cells_counted": len(unique),
            "duplicates": across, "duplicate_share": across / max(1, len(unique)),
            "finder_splits": len(matched) - len(unique) - across,  # one true cell found as two in one field
            "true_cells_in_covered_area": int(covered.sum()), "finder_finds": len(base), "missed": len(missed),
            "miss_share_beyond_finder": len(missed) / max(1, len(base)),
            "coverage_px2": est_area, "true_coverage_px2": true_area,
            "coverage_error": abs(est_area - true_area) / true_area,
            "seen_again": s.seen_again, "registered": s.registered, "views": dict(s.views),
            "per_group": dict(s.per_group), "seconds": round(seconds, 1),
            "stage_ms_mean": s.to_dict()["stage_ms_mean"]}


def stage_cost(slide: np.ndarray, op: Any, frames: int = 200) -> dict[str, float]:
    """Median ms per frame of what a manual stage adds: the work image, phase correlation, focus score."""
    from cytoedge.edge_app.stage import StageTracker, _Tracker, focus_score, work_grey
    from cytoedge.train.data.synth_operator import OperatorSource

    imgs = []
    for f in OperatorSource(slide, op):
        imgs.append(f.image)
        if len(imgs) >= frames:
            break
    times: dict[str, list[float]] = {"work image": [], "motion (phase correlation)": [], "focus score": [],
                                     "tracker.update (all of it)": []}
    tracker, whole = _Tracker(), StageTracker()
    for i, img in enumerate(imgs):
        t0 = time.perf_counter()
        g = work_grey(img, 640)
        t1 = time.perf_counter()
        tracker.shift(g)
        t2 = time.perf_counter()
        focus_score(g)
        t3 = time.perf_counter()
        whole.update(None, img)
        t4 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k].append(v * 1e3)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def int8_ms(model: Path, threads: int) -> float:
    """Median ms of one int8 invocation of the model's classifier (batch 1) on this host."""
    from cytoedge.edge_app.classifier import Classifier

    clf = Classifier(model, "tflite-int8", threads=threads)
    crop = np.full((224, 224, 3), 180, np.uint8)
    clf.classify([crop] * 2)
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        clf.classify([crop])
        ts.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(ts), 2)


def measure(model: Path, work: Path, size: tuple[int, int], threads: int, seed: int, quick: bool,
            fixed: bool) -> dict[str, Any]:
    from cytoedge.edge_app.finder import FinderConfig
    from cytoedge.train.data.synth_operator import Operator

    slide, cells = make_slide(work / "slide", size, seed)
    truth = np.array([c["bbox_xywh"] for c in cells], np.float64)
    base_op = Operator(seed=seed, revisit=True, **({"cols": 3, "rows": 2} if quick else {}))
    finder = FinderConfig()
    baseline = finder_baseline(slide, base_op, truth, finder)
    runs = []
    for who, kw in OPERATORS.items():
        for rest in RESTS:
            op = replace(base_op, rest_s=rest, **kw)
            r = run_operator(model, slide, op, truth, work / "store", f"{who}-{rest:g}s", threads, baseline)
            r["who"], r["rest_s"] = who, rest
            if fixed and (who, rest) in (("fast", RESTS[0]), ("slow", RESTS[-1])):
                r["fixed_stage_cells"] = fixed_stage_cells(slide, op, finder)
            runs.append(r)
            print(f"  {who} operator, {rest:g} s rests: {r['cells_recorded']} cells in {r['fields_recorded']} fields "
                  f"from {r['frames']} frames ({r['seconds']} s)", flush=True)
    return {"host": platform.processor() or platform.machine(), "slide_size": list(size), "true_cells": len(cells),
            "threads": threads, "runs": runs, "cost_ms": stage_cost(slide, base_op),
            "int8_ms_per_crop": int8_ms(model, threads)}


def render(res: dict[str, Any]) -> str:
    lines = [f"slide {res['slide_size'][0]}x{res['slide_size'][1]}, {res['true_cells']} true cells; camera 1280x960 "
             f"at 10 frames/s; --stage manual", "",
             "| operator | rests | frames | fields (rests) | fields in motion / blurred | cells recorded | "
             "duplicates | finder splits | misses beyond the finder | coverage error | fixed stage would record |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["runs"]:
        fixed = r.get("fixed_stage_cells")
        lines.append(f"| {r['who']} | {r['rest_s']:g} s | {r['frames']} | {r['fields_recorded']} ({r['rests']}) | "
                     f"{r['fields_in_motion_or_blurred']} | {r['cells_recorded']} | {r['duplicates']} "
                     f"({r['duplicate_share']:.1%}) | {r['finder_splits']} | {r['missed']} of {r['finder_finds']} "
                     f"({r['miss_share_beyond_finder']:.1%}) | {r['coverage_error']:.1%} | "
                     f"{'-' if fixed is None else fixed} |")
    lines += ["", "what a manual stage adds per frame (median ms on this host): "
              + ", ".join(f"{k} {v}" for k, v in res["cost_ms"].items()),
              f"int8 classifier, one crop: {res['int8_ms_per_crop']} ms ({res['threads']} threads)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.live_stage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder written by edge-convert")
    p.add_argument("--slide-size", type=_size, default=(8000, 6000), help="WIDTHxHEIGHT (default: 8000x6000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a 3x2 path (a check, not the figures)")
    p.add_argument("--no-fixed", action="store_true", help="skip counting what a fixed stage would record")
    p.add_argument("--work", type=Path, help="keep the slide and the store here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write every figure here")
    a = p.parse_args(argv)
    if a.work is not None and (a.work / "store").exists():
        raise CytoEdgeError(f"--work {a.work} already holds a store: choose a new folder (the slide may stay)")
    work = a.work or Path(tempfile.mkdtemp(prefix="live-stage-"))
    try:
        res = measure(a.model, work, a.slide_size, a.threads, a.seed, a.quick, not a.no_fixed)
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

    from cytoedge.edge_app.clitools import run_cli

    sys.exit(run_cli("cytoedge.benchmarks.live_stage", main))
