"""Helpers for the web tests: a store written through the Store API from the synthetic generator's crops."""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS
from cytoedge.edge_app.store import CellResult, Store

ORIGIN = "http://localhost"  # the Flask test client's own origin
TOKEN = "test-token-0123456789abcdef"


def synth_crops(synth_tree: Path, n: int) -> list:
    files = sorted(synth_tree.glob("im_*/CROPPED/*.bmp"))[:n]
    assert len(files) == n
    return [cv2.imread(str(f)) for f in files]


def fill_store(folder: Path, synth_tree: Path) -> dict[str, list[int]]:
    """Two slides; per frame: 4 normal, 1 benign, 2 abnormal (confidence falling frame by frame), 1 unknown.

    The review crop policy saves crops of abnormal and unknown cells only. Returns cell ids per kind.
    """
    crops = synth_crops(synth_tree, 8)
    ids: dict[str, list[int]] = {"abnormal": [], "unknown": [], "normal": []}
    with Store(folder) as s:
        for slide, frames in (("demo", 3), ("other", 1)):
            s.open_slide(slide, list(SIPAKMED_CLASSES), dict(SIPAKMED_GROUPS))
            run = s.start_run(slide, source="fields", model="shufflenet_v2_x1_0", model_sha256="0" * 64,
                              fmt="tflite-int8", board="x86", threads=2, settings={})
            for k in range(frames):
                cells = [CellResult((10 * i, 10, 30, 30), "parabasal", "normal", 0.95, 1.0, False) for i in range(4)]
                cells += [CellResult((50, 50, 30, 30), "metaplastic", "benign", 0.9, 1.0, False),
                          CellResult((90, 90, 30, 30), "koilocytotic", "abnormal", 0.9 - 0.1 * k, 1.2, False),
                          CellResult((130, 90, 30, 30), "dyskeratotic", "abnormal", 0.8 - 0.1 * k, 1.3, False),
                          CellResult((170, 90, 30, 30), "koilocytotic", "unknown", 0.4, 9.0, True)]
                s.add_frame(slide, run, name=f"field_{k:03d}.png", size=(640, 480), cells=cells, crops=crops)
            s.end_run(run, {"frames_done": frames})
        for r in s.conn.execute("SELECT id, grp FROM cells ORDER BY id"):
            ids.setdefault(r["grp"], []).append(r["id"])
    return ids


def csrf_of(client, path: str = "/review") -> str:
    """The CSRF token the page's forms carry (also starts the session)."""
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)
