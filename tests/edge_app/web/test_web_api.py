"""The web view's pages and JSON API on a filled store (Flask's test client)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import cv2
import numpy as np
from webstore import ORIGIN, csrf_of

from cytoedge.edge_app.report import TriageRule, build_report, render, triage
from cytoedge.edge_app.store import CellResult, Store
from cytoedge.edge_app.web.app import WebConfig, create_app
from cytoedge.edge_app.web.live import LiveState
from cytoedge.edge_app.web.reviews import review_queue


def test_slides_api_and_page_agree_with_the_store_and_the_triage_rule(client, store_dir):
    got = client.get("/api/slides").get_json()["slides"]
    with Store(store_dir, create=False) as s:
        want = {c.slide_id: c for c in s.list_slides()}
    assert {r["slide"] for r in got} == {"demo", "other"}
    for r in got:
        c = want[r["slide"]]
        assert (r["cells"], r["frames"], r["per_group"]) == (c.cells, c.frames, c.per_group)
        assert r["triage"] == triage(c, TriageRule())[0]
        assert r["abnormal_fraction"] == round(c.abnormal_fraction, 4)
    html = client.get("/slides").get_data(as_text=True)
    assert 'href="/slides/demo"' in html and 'href="/slides/demo/report.csv"' in html
    assert "refer for review" in html  # demo: 6 abnormal cells of 24


def test_slide_report_page_and_downloads_reuse_the_report(client, store_dir):
    html = client.get("/slides/demo").get_data(as_text=True)
    assert "Screening aid, not a diagnosis" in html and 'id="verdict"' in html
    assert len(re.findall(r'src="/crop/\d+\.png"', html)) == 9
    with Store(store_dir, create=False) as s:
        rep = build_report(s, "demo", TriageRule(), review_limit=60)
    r = client.get("/slides/demo/report.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert 'filename="demo-report.csv"' in r.headers["Content-Disposition"]
    assert list(csv.reader(io.StringIO(r.get_data(as_text=True)))) == list(csv.reader(io.StringIO(render(rep, "csv"))))
    j = client.get("/slides/demo/report.json").get_json()
    assert {k: v for k, v in j.items() if k != "generated"} == {k: v for k, v in rep.items() if k != "generated"}
    assert client.get("/slides/demo/report.md").get_data(as_text=True).startswith("# Slide demo")
    assert client.get("/api/slides/other").get_json()["cells"] == 8


def test_unknown_slides_and_formats_are_404(client):
    for path in ("/slides/nope", "/slides/.hidden", "/slides/demo/report.pdf", "/api/slides/nope",
                 "/review?slide=nope", "/review?slide=../x"):
        assert client.get(path).status_code == 404, path
    assert client.get("/api/slides/nope").get_json()["error"].startswith("no slide")


def test_review_page_lists_the_queue_in_order(client, store_dir):
    html = client.get("/review?slide=demo").get_data(as_text=True)
    shown = [int(x) for x in re.findall(r'data-cell="(\d+)"', html)]
    with Store(store_dir, create=False) as s:
        items, total = review_queue(s, "demo")
    assert shown == [i.cell.id for i in items] and f'id="queue-total">{total}<' in html
    assert "not_a_cell" in html and "Confirm koilocytotic" in html


def test_review_by_form_is_stored_flashed_and_leaves_the_queue(client, store_dir):
    csrf = csrf_of(client, "/review?slide=demo")
    with Store(store_dir, create=False) as s:
        first = review_queue(s, "demo")[0][0].cell
    r = client.post("/review", data={"csrf": csrf, "cell": first.id, "confirm": "1", "label": "parabasal",
                                     "reviewer": "Ana", "note": "ok", "slide": "demo"}, headers={"Origin": ORIGIN})
    assert r.status_code == 303 and r.headers["Location"].endswith("/review?slide=demo")
    page = client.get("/review?slide=demo").get_data(as_text=True)
    assert f"Saved: cell {first.id} confirmed {first.class_name} (by Ana)." in page
    assert f'data-cell="{first.id}"' not in page
    assert f'data-cell="{first.id}"' in client.get("/review?slide=demo&reviewed=1").get_data(as_text=True)
    got = client.get("/api/reviews?slide=demo").get_json()["reviews"]
    assert [(x["cell_id"], x["new_label"], x["confirmed"], x["note"]) for x in got] == [
        (first.id, first.class_name, True, "ok")]


def test_bad_review_input_is_a_400_with_the_reason(client, store_dir):
    csrf = csrf_of(client)
    base = {"csrf": csrf, "cell": "1", "label": "parabasal", "reviewer": "Ana"}
    for change, reason in (({"label": "cancer"}, "unknown label"), ({"reviewer": ""}, "reviewer name is empty"),
                           ({"note": "x" * 501}, "at most 500"), ({"cell": "abc"}, "whole number")):
        r = client.post("/review", data={**base, **change}, headers={"Origin": ORIGIN})
        assert r.status_code == 400 and reason in r.get_data(as_text=True), change
    assert client.post("/review", data={**base, "cell": "999999"}, headers={"Origin": ORIGIN}).status_code == 404
    h = {"Origin": ORIGIN, "X-CSRF-Token": csrf}
    r = client.post("/api/reviews", json={"cell": 1, "label": "cancer", "reviewer": "Ana"}, headers=h)
    assert r.status_code == 400 and "unknown label" in r.get_json()["error"]
    assert client.post("/api/reviews", data="not json", headers=h).status_code == 400
    assert client.post("/api/reviews", json={"cell": 1, "label": "parabasal", "reviewer": "A", "note": "n" * 70000},
                       headers=h).status_code == 413
    assert client.get("/api/reviews").get_json()["reviews"] == []


def test_export_zip_download(client):
    assert client.get("/reviews/export.zip").status_code == 404  # nothing reviewed yet
    csrf = csrf_of(client)
    queue = client.get("/api/queue?slide=demo").get_json()["items"]
    for item, label in zip(queue[:3], ("koilocytotic", "dyskeratotic", "koilocytotic")):
        r = client.post("/api/reviews", json={"cell": item["cell"], "label": label, "reviewer": "Ana"},
                        headers={"Origin": ORIGIN, "X-CSRF-Token": csrf})
        assert r.status_code == 201
    r = client.get("/reviews/export.zip")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.data)).namelist()
    assert sorted(n.split("/")[1] for n in names) == ["cytoedge-reviews.csv", "dyskeratotic", "koilocytotic",
                                                      "koilocytotic"]


def test_browse_mode_has_no_live_stream(client):
    assert client.get("/").headers["Location"].endswith("/slides")
    assert client.get("/api/live").get_json() == {"mode": "browse", "running": False}
    assert client.get("/live/frame.jpg").status_code == 404
    assert "edge-app serve" in client.get("/live").get_data(as_text=True)


def test_empty_store_folder_shows_empty_pages(tmp_path):
    c = create_app(WebConfig(store=tmp_path / "none")).test_client()
    assert "No slides in this store yet" in c.get("/slides").get_data(as_text=True)
    assert c.get("/review").status_code == 200 and c.get("/api/queue").get_json() == {"total": 0, "items": []}


def test_live_counts_and_frames_follow_the_capture(store_dir, synth_tree):
    live = LiveState(preview_width=320)
    c = create_app(WebConfig(store=store_dir, live=live, frame_wait_s=0.2)).test_client()
    assert c.get("/").headers["Location"].endswith("/live")
    assert 'id="live"' in c.get("/live").get_data(as_text=True)
    assert c.get("/live/frame.jpg?after=0").status_code == 204  # nothing published yet
    live.start("demo")
    before = c.get("/api/live").get_json()
    assert before["running"] and before["counts"]["cells"] == 24
    field = cv2.imread(str(sorted((synth_tree / "fields").glob("*.png"))[0]))
    cells = [CellResult((40, 40, 60, 60), "dyskeratotic", "abnormal", 0.7, 1.0, False)]
    with Store(store_dir, create=False) as s:  # the capture loop commits the frame, then publishes it
        s.add_frame("demo", 1, name="live_000.png", size=(field.shape[1], field.shape[0]), cells=cells)
    live.on_frame({"seq": 3, "name": "live_000.png", "cells": cells, "status": "frame 3", "slide": "demo",
                   "image": field, "labels": ["dyskeratotic 0.70"], "fps": 4.2})
    after = c.get("/api/live").get_json()
    assert after["counts"]["cells"] == 25 and after["counts"]["per_group"]["abnormal"] == 7
    assert (after["frame"], after["fps"], after["cells_in_frame"], after["version"]) == (3, 4.2, 1, 1)
    r = c.get("/live/frame.jpg?after=0")
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.headers["X-Frame-Version"] == "1"
    img = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] == 320 and img.shape[0] == round(field.shape[0] * 320 / field.shape[1])
    assert c.get("/live/frame.jpg?after=1").status_code == 204  # no newer frame within the wait
    live.finish("end of source")
    assert c.get("/api/live").get_json()["ended"] == "end of source"


def test_live_page_script_and_styles_are_small(client):
    html = client.get("/live").get_data(as_text=True)
    js = client.get("/static/cytoedge.js").data
    css = client.get("/static/cytoedge.css").data
    assert 'name="viewport"' in html and len(js) < 8000 and len(css) < 8000
    assert json.loads(client.get("/api/queue").get_data())["total"] == 12


def test_the_slide_page_shows_the_estimate_its_interval_adequacy_and_the_reason(tmp_path):
    import numpy as np

    classes = ["parabasal", "metaplastic", "koilocytotic"]
    groups = {"parabasal": "normal", "metaplastic": "benign", "koilocytotic": "abnormal"}
    counts = (np.eye(3, dtype=int) * 300 + 10).tolist()
    with Store(tmp_path / "s") as s:
        s.open_slide("e", classes, groups)
        run = s.start_run("e", source="x", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b", threads=1,
                          settings={"error_rates": {"classes": classes, "counts": counts}})
        s.add_frame("e", run, name="f.png", size=(64, 64),
                    cells=[CellResult((0, 0, 5, 5), "parabasal", "normal", 0.9, 1.0, False, 0.05)] * 200
                    + [CellResult((0, 0, 5, 5), "koilocytotic", "abnormal", 0.9, 1.0, False, 0.9)] * 60)
    c = create_app(WebConfig(store=tmp_path / "s")).test_client()
    html = c.get("/slides/e").get_data(as_text=True)
    assert 'id="estimate"' in html and "95 % interval" in html and "unsatisfactory: 260 of 5 000" in html
    assert ">refer<" in html and "lies above the limit" in html
