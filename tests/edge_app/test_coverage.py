"""The coverage map and the live adequacy count (edge_app.coverage) in the web view and edge-app report."""

from __future__ import annotations

import cv2
import numpy as np

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.coverage import FIELD_BGR, coverage_picture, progress
from cytoedge.edge_app.store import CellResult, FieldPlace, Store
from cytoedge.edge_app.web.app import WebConfig, create_app
from cytoedge.edge_app.web.live import LiveState
from test_store import CLASSES, GROUPS, cells_of_a_frame

FIELDS = [(0.0, 0.0), (1024.0, 0.0), (1024.0, 768.0)]  # three fields of 1280x960, 20 % overlap


def manual_store(folder):
    s = Store(folder)
    s.open_slide("scope", CLASSES, GROUPS)
    run = s.start_run("scope", source="picam", model="m", model_sha256="0", fmt="f", board="b", threads=1, settings={})
    for k, (x, y) in enumerate(FIELDS):
        cells = [CellResult(c.box, c.class_name, c.group, c.confidence, c.distance, c.unknown,
                            slide_xy=(x + c.box[0], y + c.box[1]))
                 for c in cells_of_a_frame()]
        s.add_frame("scope", run, name=f"picam#{k}", size=(1280, 960), cells=cells, place=FieldPlace(x, y, 10.0 + k))
    s.open_slide("files", CLASSES, GROUPS)
    s.add_frame("files", run, name="f.png", size=(1280, 960), cells=cells_of_a_frame())  # fixed stage: no place
    return s


def test_the_picture_covers_the_union_of_the_fields_to_scale():
    pic = coverage_picture([(x, y, 1280, 960) for x, y in FIELDS], width=484)
    h, w = pic.shape[:2]
    assert w == 484 and abs(h - round((768 + 960) * 476 / 2304) - 8) <= 1  # the slide's aspect ratio kept
    covered = np.all(pic == FIELD_BGR, axis=2).mean()
    empty = np.all(pic == 255, axis=2).mean()
    union = (2304 * 960 + 1280 * 768) / (2304 * 1728)  # share of the bounding box the three fields cover
    assert covered < union and empty > 0.9 * (1 - union)  # the gap at the lower left stays empty
    assert empty < 1.1 * (1 - union) + 0.05


def test_progress_counts_classifiable_cells_against_the_threshold(tmp_path):
    with manual_store(tmp_path) as s:
        counts = s.slide_counts("scope")
        fields = [f[:4] for f in s.slide_fields("scope")]
    p = progress(counts, fields, threshold=9)  # 3 fields x 3 classified cells (one of 4 is unknown)
    assert p["classifiable"] == 9 and p["adequate"] and p["adequacy_text"] == "adequate: you may stop"
    assert p["fields"] == 3 and 2.5 < p["coverage_fields"] < 3
    q = progress(counts, fields, threshold=10)
    assert not q["adequate"] and q["missing"] == 1 and q["adequacy_text"].startswith("unsatisfactory: 9 of 10")


def test_web_view_serves_the_map_and_the_live_progress(tmp_path):
    manual_store(tmp_path).close()
    live = LiveState()
    client = create_app(WebConfig(store=tmp_path, live=live, adequacy_cells=2000)).test_client()
    r = client.get("/slides/scope/coverage.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    img = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] == 480
    assert client.get("/slides/files/coverage.png").status_code == 404  # a fixed stage has no map
    assert b'id="coverage"' in client.get("/slides/scope").data
    assert b'id="coverage"' not in client.get("/slides/files").data
    live.start("scope")
    live.publish(slide="scope", frame_no=None, name="picam#9", image=np.zeros((96, 128, 3), np.uint8), boxes=[],
                 labels=[], groups=[], status="", fps=5.0, committed=False,
                 stage={"state": "out of focus", "focus": 4.0, "threshold": 8.0, "focus_share": 0.5, "x": 0, "y": 0})
    j = client.get("/api/live").get_json()
    assert j["stage"]["state"] == "out of focus" and j["frames_done"] == 0  # shown, not counted
    assert j["counts"]["progress"]["classifiable"] == 9 and j["counts"]["progress"]["threshold"] == 2000
    assert j["counts"]["progress"]["adequacy_text"] == "unsatisfactory: 9 of 2 000 classifiable squamous cells"


def test_report_writes_the_same_map_beside_it(tmp_path, capsys):
    manual_store(tmp_path / "store").close()
    out = tmp_path / "reports" / "scope.md"
    assert main(["report", "--slide", "scope", "--out", str(tmp_path / "store"), "-o", str(out)]) == 0
    png = tmp_path / "reports" / "scope-coverage.png"
    assert png.is_file() and "![coverage map](scope-coverage.png)" in out.read_text()
    assert cv2.imread(str(png)).shape[1] == 480
    assert main(["report", "--slide", "files", "--out", str(tmp_path / "store"), "-o", str(tmp_path / "f.md")]) == 0
    assert "## Coverage" not in (tmp_path / "f.md").read_text() and not (tmp_path / "f-coverage.png").exists()
