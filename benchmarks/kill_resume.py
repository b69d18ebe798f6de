"""A restart loop never recounts a slide: kill -9 at random points, rerun, compare with one clean run.

    python -m cytoedge.benchmarks.kill_resume --model MODEL_DIR [--frames 40] [--kills 20] [--seed 0]

1. ``--frames`` distinct synthetic 1280x960 fields (30 cells each) are processed once by ``edge-app``
   (the clean run).
2. The same folder, a new store: ``--kills`` times, ``edge-app`` is started and killed with SIGKILL once
   the store holds a random number of frames, plus a random fraction of a frame (start-up, finding,
   classifying, a crop write, a commit); then one run to the end.
3. Both stores' slide records are compared: frames, cells, per class and group, every frame's name and
   cell count, crop files (the report and the triage read exactly these).
4. What resuming costs per frame: reading + hashing a frame file (the identity) against decoding it.

Prints every figure; exit status 1 when the two records differ.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def committed_frames(db: Path) -> int:
    """Frames committed in a store file (0 while it does not exist yet), read without disturbing the writer."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as con:
            return con.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    except sqlite3.Error:
        return 0


def record(store: Path, slide: str) -> dict:
    from cytoedge.edge_app.store import Store

    with Store(store, create=False) as s:
        c = s.slide_counts(slide)
        frames = sorted(tuple(r) for r in s.conn.execute("SELECT name, n_cells FROM frames WHERE slide_id = ?", (slide,)))
        crops = sorted(r[0] for r in s.conn.execute("SELECT crop_path FROM cells WHERE crop_path IS NOT NULL"))
        integrity = s.integrity_check()
    on_disk = sorted(p.relative_to(store).as_posix() for p in (store / "crops").rglob("*") if p.is_file())
    return {"frames": c.frames, "cells": c.cells, "per_class": c.per_class, "per_group": c.per_group,
            "by_frame": frames, "crops": crops, "crop_files": on_disk, "integrity": integrity}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.kill_resume", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by edge-convert")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    a = p.parse_args(argv)

    import cv2
    import numpy as np

    from cytoedge.benchmarks.pipeline_speed import make_frames

    work = Path(a.out or tempfile.mkdtemp(prefix="kill-resume-"))
    frames = make_frames(work / "fields", a.frames, 30, seed=a.seed)
    cmd = lambda store: [sys.executable, "-m", "cytoedge.edge_app", "--model", str(a.model), "--source",  # noqa: E731
                         str(work / "fields"), "--slide", "k", "--out", str(store), "--threads", "2",
                         "--save-crops", "all", "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd(work / "clean"), check=True, capture_output=True)
    clean_s = time.perf_counter() - t0
    clean = record(work / "clean", "k")

    rng = random.Random(a.seed)
    store = work / "killed"
    kills, at = 0, []
    for target in sorted(rng.randrange(a.frames) for _ in range(a.kills)):  # spread over the whole pass
        proc = subprocess.Popen(cmd(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while committed_frames(store / "cytoedge.sqlite") < target and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            continue  # it finished first: nothing to kill this time
        held = committed_frames(store / "cytoedge.sqlite")
        proc.kill()
        proc.wait()
        kills += 1
        at.append(held)
    subprocess.run(cmd(store), check=True, capture_output=True)
    killed = record(store, "k")

    same = {k: clean[k] == killed[k] for k in clean}
    print(f"{a.frames} distinct 1280x960 fields; clean run {clean_s:.1f} s")
    print(f"{kills} kill -9 (the store then held {', '.join(map(str, at))} frames), then one run to the end")
    print(f"{'':12s} {'frames':>7s} {'cells':>7s} {'crops':>7s}  per group")
    for name, r in (("clean", clean), ("kill loop", killed)):
        print(f"{name:12s} {r['frames']:7d} {r['cells']:7d} {len(r['crops']):7d}  {r['per_group']}")
    print("equal: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))

    reads, hashes, decodes = [], [], []
    for f in frames[:10]:
        t0 = time.perf_counter()
        data = f.read_bytes()
        t1 = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        t2 = time.perf_counter()
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        t3 = time.perf_counter()
        reads.append(t1 - t0)
        hashes.append(t2 - t1)
        decodes.append(t3 - t2)
    size = statistics.mean(f.stat().st_size for f in frames[:10]) / 1e6
    print(f"per {size:.1f} MB PNG field (median of 10): read {statistics.median(reads) * 1e3:.2f} ms, SHA-256 "
          f"{statistics.median(hashes) * 1e3:.2f} ms, decode {statistics.median(decodes) * 1e3:.2f} ms")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
