"""The Flask app: live page, slides and their reports, the review queue, and a small JSON API.

    app = create_app(WebConfig(store=Path("cytoedge-data"), live=LiveState()))

Pages (HTML, phone-sized, plain templates + one small script, no build step):
``/live``, ``/slides``, ``/slides/<id>``, ``/review``. Downloads:
``/slides/<id>/report.{md,json,csv}``, ``/reviews/export.zip``, ``/crop/<cell>.png``.
JSON: ``/api/live``, ``/api/slides``, ``/api/slides/<id>``, ``/api/queue``,
``/api/reviews`` (GET, and POST to add one). See :mod:`edge_app.web.security` for
the token and forgery rules every route goes through.

Each request opens its own :class:`~edge_app.store.Store` (SQLite connections stay
in their thread) and closes it without a WAL checkpoint, so readers never stall the
capture loop's writes.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, flash, jsonify, redirect, render_template, request, send_file, session, url_for
from werkzeug.exceptions import HTTPException

from cytoedge.edge_app.classes import GROUPS
from cytoedge.edge_app.coverage import coverage_png, progress, slide_fields
from cytoedge.edge_app.errors import CytoEdgeError, StoreError
from cytoedge.edge_app.report import REPORT_FORMATS, TriageRule, build_report, format_share, render, slide_verdict
from cytoedge.edge_app.store import DB_FILE, Store, check_slide_id
from cytoedge.edge_app.web.live import LiveState
from cytoedge.edge_app.web.reviews import (NOT_A_CELL, ReviewError, add_review, allowed_labels, cell_id_of, export_zip,
                                  reviews, review_queue, QUEUE_ORDERS)
from cytoedge.edge_app.web.security import (CSRF_FIELD, CSRF_HEADER, LOCAL_NAMES, TOKEN_COOKIE, has_control_chars,
                                   local_path, new_csrf_token, presented_token, same_origin, token_matches)

_MIMES = {"md": "text/markdown; charset=utf-8", "json": "application/json", "csv": "text/csv; charset=utf-8"}
_CSP = ("default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class WebConfig:
    store: Path  # the store folder (edge-app --out)
    token: str | None = None  # None: no token, and only Host 127.0.0.1 / localhost is answered
    live: LiveState | None = None  # None: browse only (edge-app serve)
    rule: TriageRule = field(default_factory=TriageRule)  # the slides page's triage flag
    frame_wait_s: float = 2.0  # how long a frame request waits for a new frame before 204
    page_size: int = 24  # review queue items per page
    view_fps: float = 5.0  # the live page asks for at most this many frames per second
    adequacy_cells: int = 5000  # classifiable squamous cells a slide needs (edge_app.adequacy)


def create_app(cfg: WebConfig) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME="cytoedge_session",
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True, MAX_CONTENT_LENGTH=64 * 1024,
                      TRUSTED_HOSTS=list(LOCAL_NAMES) if cfg.token is None else None)
    app.json.sort_keys = False  # per_class keeps the model's class order
    counts_cache: dict[str, Any] = {"key": None, "value": None}
    counts_lock = threading.Lock()

    @contextmanager
    def open_store() -> Iterator[Store | None]:
        if not (cfg.store / DB_FILE).is_file():
            yield None  # nothing captured yet
            return
        store = Store(cfg.store, create=False)
        try:
            yield store
        finally:
            store.close(checkpoint=False)

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = new_csrf_token()
        return session["csrf"]

    app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=CSRF_FIELD, groups=GROUPS)
    app.jinja_env.filters["share"] = format_share  # the report's one way to write a share

    @app.before_request
    def guard() -> Response | None:
        if has_control_chars(request.path):  # CR/LF/tab ... in a path are never ours (and never a header)
            abort(400, "control characters in the path")
        if cfg.token is not None:
            given = request.args.get("token")
            if given is not None:  # the printed address: set the cookie, then drop the token from the URL
                if request.method != "GET" or not token_matches(cfg.token, given):
                    return Response(status=401)
                rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
                resp = redirect(local_path(request.path) + (f"?{urlencode(rest)}" if rest else ""), 303)
                resp.set_cookie(TOKEN_COOKIE, cfg.token, httponly=True, samesite="Strict", path="/")
                return resp
            if not token_matches(cfg.token, presented_token(request.headers, request.cookies)):
                return Response(status=401)
        if request.method not in ("GET", "HEAD"):
            if not same_origin(request.host_url, request.headers):
                abort(403, "refused: this request did not come from this web view's own pages")
            given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
            expected = session.get("csrf")
            if not expected or not token_matches(expected, given):
                abort(403, "refused: the page is stale (the server restarted?) - reload it and try again")
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        text = exc.description if exc.code in (400, 403, 404, 409) else exc.name
        if request.path.startswith("/api/"):
            resp = jsonify(error=text)
        else:
            resp = Response(f"{exc.code} {exc.name}: {text}\n", mimetype="text/plain")
        resp.status_code = exc.code or 500
        return resp

    def slide_arg(value: str | None) -> str | None:
        if not value:
            return None
        try:
            return check_slide_id(value)
        except CytoEdgeError:
            abort(404, "no such slide")

    # -- live ----------------------------------------------------------------------------------
    @app.get("/")
    def index() -> Response:
        return redirect(url_for("live_page" if cfg.live is not None else "slides_page"), 303)

    @app.get("/live")
    def live_page() -> str:
        return render_template("live.html", active="live", browse=cfg.live is None,
                               interval_ms=int(1000 / cfg.view_fps))

    def live_counts(snap: dict[str, Any]) -> dict[str, Any] | None:
        key = (snap["slide"], snap["version"])
        with counts_lock:
            if counts_cache["key"] == key:
                return counts_cache["value"]
        with open_store() as store:
            value = None
            if store is not None and snap["slide"] and store.has_slide(snap["slide"]):
                c = store.slide_counts(snap["slide"])
                value = {"frames": c.frames, "cells": c.cells, "per_class": c.per_class, "per_group": c.per_group,
                         "class_groups": c.class_groups, "abnormal_fraction": round(c.abnormal_fraction, 4),
                         "abnormal_fraction_text": format_share(c.abnormal_fraction),
                         "progress": progress(c, slide_fields(store, snap["slide"]), cfg.adequacy_cells)}
        with counts_lock:
            counts_cache.update(key=key, value=value)
        return value

    @app.get("/api/live")
    def api_live() -> Response:
        if cfg.live is None:
            return jsonify(mode="browse", running=False)
        snap = cfg.live.snapshot()
        return jsonify(mode="capture", **snap, counts=live_counts(snap))

    @app.get("/live/frame.jpg")
    def live_frame() -> Response:
        if cfg.live is None:
            abort(404, "no capture running: this is edge-app serve (browse only)")
        got = cfg.live.wait_frame(request.args.get("after", 0, type=int), timeout=cfg.frame_wait_s)
        if got is None:
            return Response(status=204)
        return Response(got[1], mimetype="image/jpeg", headers={"X-Frame-Version": str(got[0])})

    @app.get("/slides/<slide_id>/coverage.png")
    def coverage(slide_id: str) -> Response:
        sid = slide_arg(slide_id)
        with open_store() as store:
            fields = slide_fields(store, sid) if store is not None and store.has_slide(sid) else []
        if not fields:
            abort(404, "no coverage map: this slide has no fields with slide coordinates (--stage manual)")
        return Response(coverage_png(fields), mimetype="image/png")

    # -- slides and reports --------------------------------------------------------------------
    def slide_rows(store: Store | None) -> list[dict[str, Any]]:
        rows = []
        for c in store.list_slides() if store is not None else []:
            v = slide_verdict(c, cfg.rule)
            rows.append({"slide": c.slide_id, "created": c.created, "frames": c.frames, "cells": c.cells,
                         "per_group": c.per_group, "abnormal_fraction": round(c.abnormal_fraction, 4),
                         "abnormal_fraction_text": format_share(c.abnormal_fraction),
                         "estimate": v["estimate"], "triage": v["verdict"], "refer": v["refer"], "reasons": v["reasons"]})
        return rows

    @app.get("/slides")
    def slides_page() -> str:
        with open_store() as store:
            return render_template("slides.html", active="slides", rows=slide_rows(store))

    @app.get("/api/slides")
    def api_slides() -> Response:
        with open_store() as store:
            return jsonify(slides=slide_rows(store))

    def report_of(slide_id: str) -> dict[str, Any]:
        slide_id = slide_arg(slide_id) or ""
        with open_store() as store:
            if store is None or not store.has_slide(slide_id):
                abort(404, f"no slide {slide_id!r} in this store")
            return build_report(store, slide_id, cfg.rule, review_limit=60)

    @app.get("/slides/<slide_id>")
    def slide_page(slide_id: str) -> str:
        rep = report_of(slide_id)
        with open_store() as store:
            n_fields = len(slide_fields(store, rep["slide"])) if store is not None else 0
        return render_template("slide.html", active="slides", rep=rep, formats=REPORT_FORMATS, n_fields=n_fields)

    @app.get("/api/slides/<slide_id>")
    def api_slide(slide_id: str) -> Response:
        return jsonify(report_of(slide_id))

    @app.get("/slides/<slide_id>/report.<fmt>")
    def slide_report(slide_id: str, fmt: str) -> Response:
        if fmt not in REPORT_FORMATS:
            abort(404, f"no report format {fmt!r}: use {', '.join(REPORT_FORMATS)}")
        rep = report_of(slide_id)
        return Response(render(rep, fmt), mimetype=_MIMES[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{rep["slide"]}-report.{fmt}"'})

    # -- crops -----------------------------------------------------------------------------------
    @app.get("/crop/<int:cell_id>.png")
    def crop(cell_id: int) -> Response:
        with open_store() as store:
            path = store.crop_file(cell_id) if store is not None else None  # only inside the store's crops folder
        if path is None:
            abort(404, "no saved crop for this cell")
        return send_file(path, mimetype="image/png", max_age=3600)

    # -- review queue ----------------------------------------------------------------------------
    @app.get("/review")
    def review_page() -> str:
        slide_id = slide_arg(request.args.get("slide"))
        show_reviewed = request.args.get("reviewed") == "1"
        page = max(1, request.args.get("page", 1, type=int))
        with open_store() as store:
            if store is None:
                items, total, labels, recent, slides = [], 0, {}, [], []
            else:
                if slide_id is not None and not store.has_slide(slide_id):
                    abort(404, f"no slide {slide_id!r} in this store")
                order = request.args.get("order", "doubt")
                if order not in QUEUE_ORDERS:
                    abort(400, f"order must be one of {', '.join(QUEUE_ORDERS)}")
                items, total = review_queue(store, slide_id, include_reviewed=show_reviewed,
                                            limit=cfg.page_size, offset=(page - 1) * cfg.page_size, order=order)
                labels = {s: allowed_labels(store, s) for s in {i.cell.slide_id for i in items}}
                recent = reviews(store, slide_id=slide_id, limit=20)
                slides = [s.slide_id for s in store.list_slides()]
        pages = max(1, -(-total // cfg.page_size))
        return render_template("review.html", active="review", items=items, total=total, labels=labels,
                               recent=recent, slides=slides, slide=slide_id, show_reviewed=show_reviewed,
                               page=page, pages=pages, not_a_cell=NOT_A_CELL)

    def review_from(data: dict[str, Any]) -> dict[str, Any]:
        cell_id = cell_id_of(data.get("cell"))
        with open_store() as store:
            if store is None:
                raise ReviewError("this store holds no cells yet")
            cell = store.cell(cell_id)
            if cell is None:
                abort(404, f"no cell {cell_id} in this store")
            label = cell.class_name if data.get("confirm") in ("1", 1, True) else data.get("label")
            if not isinstance(label, str):
                raise ReviewError("label is missing: choose a class")
            rev = add_review(store, cell_id, label, data.get("reviewer", ""), data.get("note") or "")
        return rev.__dict__ | {"confirmed": rev.confirmed}

    @app.post("/review")
    def review_post() -> Response:
        back = {k: v for k, v in (("slide", request.form.get("slide") or None),
                                  ("reviewed", "1" if request.form.get("reviewed") == "1" else None)) if v}
        if back.get("slide"):
            slide_arg(back["slide"])
        try:
            rev = review_from(request.form.to_dict())
        except ReviewError as exc:
            return Response(render_template("error.html", active="review", message=str(exc),
                                            back=url_for("review_page", **back)), status=400)
        verb = "confirmed" if rev["confirmed"] else f"corrected {rev['old_label']} \u2192"
        flash(f"Saved: cell {rev['cell_id']} {verb} {rev['new_label']} (by {rev['reviewer']}).")
        return redirect(url_for("review_page", **back), 303)

    @app.post("/api/reviews")
    def api_review_post() -> tuple[Response, int]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, "send a JSON object: {cell, label | confirm, reviewer, note}")
        try:
            return jsonify(review_from(data)), 201
        except ReviewError as exc:
            return jsonify(error=str(exc)), 400

    @app.get("/api/reviews")
    def api_reviews() -> Response:
        slide_id = slide_arg(request.args.get("slide"))
        with open_store() as store:
            rows = reviews(store, slide_id=slide_id) if store is not None else []
        return jsonify(reviews=[r.__dict__ | {"confirmed": r.confirmed} for r in rows])

    @app.get("/api/queue")
    def api_queue() -> Response:
        slide_id = slide_arg(request.args.get("slide"))
        with open_store() as store:
            items, total = review_queue(store, slide_id, limit=500) if store is not None else ([], 0)
        return jsonify(total=total, items=[{"cell": i.cell.id, "slide": i.cell.slide_id, "class": i.cell.class_name,
                                            "group": i.cell.group, "unknown": i.cell.unknown,
                                            "confidence": round(i.cell.confidence, 4), "doubt": i.doubt,
                                            "crop": url_for("crop", cell_id=i.cell.id)} for i in items])

    @app.get("/reviews/export.zip")
    def reviews_zip() -> Response:
        with open_store() as store:
            if store is None:
                abort(404, "nothing to export: no store yet")
            try:
                data, _ = export_zip(store)
            except ReviewError as exc:
                abort(404, str(exc))
        return Response(data, mimetype="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="cytoedge-reviews.zip"'})

    @app.errorhandler(StoreError)
    def store_error(exc: StoreError) -> Response:
        return Response(f"503 store unavailable: {' '.join(str(exc).split())}\n", status=503, mimetype="text/plain")

    return app
