"""A store file with damaged pages: what `edge-app store recover` gets back, and what the start-up checks cost.

    python -m cytoedge.benchmarks.store_damage [--slides 20] [--frames 200] [--cells 25] [--pages 1,5,20] [--seed 0]

1. A store of ``--slides`` x ``--frames`` x ``--cells`` (written through the Store API, one crop named per
   ten cells, as the review policy saves), closed cleanly.
2. For each count in ``--pages``: a copy with that many random pages of the file overwritten with noise
   (anywhere but the header page), then ``PRAGMA integrity_check`` (what ``store check`` runs), then
   :func:`edge_app.store_repair.recover_store`: rows kept per table against the original, rows left out
   (whole frames only), the time it took.
3. On the undamaged store: ``PRAGMA quick_check`` and the leftovers sweep's query (what a start after an
   interrupted run costs), and the resume's load of one slide's frame keys (what every start costs).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CLASSES = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
GROUPS = {"superficial_intermediate": "normal", "parabasal": "normal", "metaplastic": "benign",
          "koilocytotic": "abnormal", "dyskeratotic": "abnormal"}


def build(folder: Path, slides: int, frames: int, cells: int) -> None:
    from cytoedge.edge_app.store import Store

    with Store(folder, crop_policy="none") as s:
        s.conn.execute("PRAGMA synchronous=OFF")  # only the contents matter here
        for k in range(slides):
            slide = f"S{k:03d}"
            s.open_slide(slide, CLASSES, GROUPS)
            run = s.start_run(slide, source="fields", model="m", model_sha256="0" * 64, fmt="tflite-int8",
                              board="b", threads=2, settings={})
            with s.transaction():
                for i in range(frames):
                    fid = s.conn.execute(
                        "INSERT INTO frames (slide_id, run_id, seq, name, captured, width, height, n_cells, frame_key)"
                        " VALUES (?, ?, ?, ?, '2026-12-01T00:00:00+00:00', 1280, 960, ?, ?)",
                        (slide, run, i, f"field_{i:04d}.png", cells, f"sha256:{k:03d}{i:061d}")).lastrowid
                    s.conn.executemany(
                        "INSERT INTO cells (frame_id, slide_id, idx, x, y, w, h, class_name, grp, confidence, distance,"
                        " unknown, crop_path) VALUES (?, ?, ?, 10, 20, 64, 64, ?, ?, ?, 1.5, 0, ?)",
                        [(fid, slide, j, CLASSES[j % 5], GROUPS[CLASSES[j % 5]], 0.5 + j / 100,
                          f"crops/{slide}/{i:06d}_{j:03d}_{CLASSES[j % 5]}.png" if j % 10 == 0 else None)
                         for j in range(cells)])
            s.end_run(run, {})


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("slides", "runs", "frames", "cells")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.store_damage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slides", type=int, default=20)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--cells", type=int, default=25)
    p.add_argument("--pages", default="1,5,20", help="damaged pages per copy, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    from cytoedge.edge_app.store import DB_FILE, Store
    from cytoedge.edge_app.store_repair import check_store, recover_store

    work = Path(a.out or tempfile.mkdtemp(prefix="store-damage-"))
    sound = work / "sound"
    t0 = time.perf_counter()
    build(sound, a.slides, a.frames, a.cells)
    db = sound / DB_FILE
    original = counts(db)
    size = db.stat().st_size
    with sqlite3.connect(db) as con:
        page, pages = con.execute("PRAGMA page_size").fetchone()[0], con.execute("PRAGMA page_count").fetchone()[0]
    print(f"store: {original['slides']} slides, {original['frames']} frames, {original['cells']} cells; "
          f"{size / 1e6:.1f} MB, {pages} pages of {page} B (built in {time.perf_counter() - t0:.1f} s)")

    with Store(sound, create=False) as s:
        for what, call in (("PRAGMA quick_check", s.quick_check), ("leftovers sweep query", s.referenced_crops),
                           ("one slide's frame keys (resume)", lambda: s.frame_keys("S000"))):
            t0 = time.perf_counter()
            call()
            print(f"  {what:34s} {(time.perf_counter() - t0) * 1e3:8.1f} ms")

    rng = random.Random(a.seed)
    print()
    print(f"{'damaged pages':>13s} {'check':>8s} {'recover s':>9s} {'frames kept':>14s} {'cells kept':>16s}  left out")
    for n in (int(x) for x in a.pages.split(",")):
        copy = work / f"damaged-{n}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(sound, copy)
        with open(copy / DB_FILE, "r+b") as fh:
            for pg in rng.sample(range(2, pages + 1), n):
                fh.seek((pg - 1) * page)
                fh.write(rng.randbytes(page))
        verdict = "ok" if check_store(copy).ok else "damaged"
        t0 = time.perf_counter()
        res = recover_store(copy)
        took = time.perf_counter() - t0
        got = counts(copy / DB_FILE)
        left = "; ".join(f"{v} {k}" for k, v in res.dropped.items()) or "-"
        print(f"{n:13d} {verdict:>8s} {took:9.2f} {got['frames']:6d} ({100 * got['frames'] / original['frames']:5.1f} %)"
              f" {got['cells']:8d} ({100 * got['cells'] / original['cells']:5.1f} %)  {left}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
