"""The web view against a hostile network: bounded threads and timeouts (waitress), odd cell ids, open
redirects, CR/LF, other loopback addresses, spreadsheet formulas in exports, and Hypothesis over its inputs."""

from __future__ import annotations

import csv
import io
import socket
import sqlite3
import threading
import time
import urllib.request
import zipfile
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webstore import ORIGIN, TOKEN, csrf_of

from cytoedge.edge_app.csvsafe import neutral
from cytoedge.edge_app.store import DB_FILE
from cytoedge.edge_app.web.app import WebConfig, create_app
from cytoedge.edge_app.web.security import resolve_token
from cytoedge.edge_app.web.server import ServerLimits, WebServer

HUGE = 10**23


def review_count(store_dir) -> int:
    with sqlite3.connect(store_dir / DB_FILE) as conn:
        return conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]


def raw_request(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """The raw answer to ``data`` (b"" when the server reset the connection before answering)."""
    chunks = []
    with socket.create_connection((host, port), timeout=10) as s:
        try:
            s.sendall(data)
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server refused and closed while bytes were still in flight
    return b"".join(chunks)


def http_get(port: int, target: bytes) -> bytes:
    return raw_request(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")


def status_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n")[0].split(b" ")[1] if answer else b"reset"


# -- the server ------------------------------------------------------------------------------------

def test_idle_half_open_connections_cost_no_threads_and_time_out(store_dir):
    limits = ServerLimits(request_timeout_s=1.0, sweep_interval_s=1)
    with WebServer(WebConfig(store=store_dir), "127.0.0.1", 0, limits=limits) as web:
        before = threading.active_count()
        conns = []
        for _ in range(400):  # each sends half a request line and then nothing
            s = socket.create_connection(("127.0.0.1", web.port))
            s.sendall(b"GET /api/slides HTTP/1.1\r\nHo")
            conns.append(s)
        time.sleep(1.0)
        assert threading.active_count() <= before + 1  # no thread per connection (was one each: 403)
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{web.port}/api/slides", timeout=60) as r:
            assert r.status == 200  # served once the request timeout dropped the half-open ones
        waited = time.monotonic() - t0
        dropped = 0
        for s in conns:
            s.settimeout(0.5)
            try:
                dropped += s.recv(1) == b""
            except (socket.timeout, ConnectionResetError):
                dropped += 1
            s.close()
        assert dropped == 400 and waited < 30


def test_a_request_that_trickles_in_is_dropped(store_dir):
    limits = ServerLimits(request_timeout_s=1.0, sweep_interval_s=1)
    with WebServer(WebConfig(store=store_dir), "127.0.0.1", 0, limits=limits) as web:
        s = socket.create_connection(("127.0.0.1", web.port))
        t0 = time.monotonic()
        with pytest.raises(OSError):  # reset or broken pipe once the server closed it
            for ch in b"GET /api/slides HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:
                s.sendall(bytes([ch]))  # one byte every 0.1 s: never idle, never finished
                time.sleep(0.1)
                assert time.monotonic() - t0 < 15, "the slow request was never dropped"
        s.close()


def test_oversized_headers_and_bodies_are_refused(store_dir):
    with WebServer(WebConfig(store=store_dir), "127.0.0.1", 0) as web:
        head = raw_request(web.port, b"GET /api/slides HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40000
                           + b"\r\n\r\n")
        assert status_of(head) in (b"400", b"431", b"reset")
        assert status_of(http_get(web.port, b"/api/slides")) == b"200"
        body = raw_request(web.port, b"POST /api/reviews HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000\r\n"
                           b"Content-Type: application/json\r\n\r\n{")  # refused on the announced length
        assert status_of(body) == b"413"


def test_cr_lf_in_the_path_is_400(store_dir):
    with WebServer(WebConfig(store=store_dir), "127.0.0.1", 0) as web:
        for path in (b"/%0d%0aSet-Cookie:%20x=1", b"/review%0a", b"/%09/x", b"/a%00b"):
            got = http_get(web.port, path)
            assert status_of(got) == b"400" and b"Set-Cookie: x" not in got, (path, got[:80])
        assert status_of(http_get(web.port, b"/re\rview")) == b"400"  # a raw CR: waitress refuses it itself


def test_login_redirect_to_a_tab_path_stays_local_on_the_real_server(store_dir):
    with WebServer(WebConfig(store=store_dir, token=TOKEN), "127.0.0.1", 0) as web:
        for path in (b"/%09/evil.example", b"//evil.example", b"/%5Cevil.example", b"/%2F%2Fevil.example"):
            got = http_get(web.port, path + f"?token={TOKEN}".encode())
            lines = got.split(b"\r\n")
            location = next((v for k, _, v in (ln.partition(b": ") for ln in lines) if k.lower() == b"location"), b"")
            assert status_of(got) == b"400" or (status_of(got) == b"303" and _local(location.decode())), got[:200]


def _local(location: str) -> bool:
    """A browser stays on this site for this Location (it drops tabs and newlines and reads \\ as /)."""
    cleaned = "".join(ch for ch in location if ch not in "\t\r\n").replace("\\", "/")
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return parts.hostname in ("127.0.0.1", "localhost")
    return cleaned.startswith("/") and not cleaned.startswith("//")


def test_another_loopback_address_works_with_its_generated_token(store_dir):
    token = resolve_token("127.0.0.2", None)
    assert token  # only 127.0.0.1 / localhost go without one
    with WebServer(WebConfig(store=store_dir, token=token), "127.0.0.2", 0) as web:
        assert web.url == f"http://127.0.0.2:{web.port}/?token={token}"
        base = f"http://127.0.0.2:{web.port}"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/slides", timeout=5)
        assert e.value.code == 401
        req = urllib.request.Request(f"{base}/api/slides", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and b"demo" in r.read()


# -- the app ---------------------------------------------------------------------------------------

def post_review(client, body: dict):
    token = csrf_of(client)
    return client.post("/api/reviews", json=body, headers={"Origin": ORIGIN, "X-CSRF-Token": token})


@pytest.mark.parametrize("cell", [HUGE, -1, 0, True, False, 1.0, "1e3", " 1 ", "١", None, [1], {"id": 1}, 2**63])
def test_odd_cell_ids_are_4xx_and_never_stored(client, store_dir, cell):
    r = post_review(client, {"cell": cell, "label": "parabasal", "reviewer": "A"})
    if cell == " 1 ":
        assert r.status_code == 201  # digits with spaces around are still the cell id 1
        return
    assert 400 <= r.status_code < 500, (cell, r.status_code, r.get_json())
    assert review_count(store_dir) == 0
    token = csrf_of(client)
    form = client.post("/review", data={"cell": str(cell), "label": "parabasal", "reviewer": "A", "csrf": token},
                       headers={"Origin": ORIGIN})
    assert 400 <= form.status_code < 500 and review_count(store_dir) == 0


def test_huge_crop_id_is_404(client):
    assert client.get(f"/crop/{HUGE}.png").status_code == 404
    assert client.get(f"/crop/{2**63}.png").status_code == 404


def test_review_export_and_report_csv_neutralise_formulas(client, store_dir):
    cell = sqlite3.connect(store_dir / DB_FILE).execute(
        "SELECT id, class_name FROM cells WHERE crop_path IS NOT NULL LIMIT 1").fetchone()
    for reviewer, note in (("=cmd|' /C calc'!A0", "+1+1"), ("@SUM(A1)", "-2+3")):
        assert post_review(client, {"cell": cell[0], "confirm": True, "reviewer": reviewer, "note": note}).status_code \
            == 201
    data = client.get("/reviews/export.zip").data
    manifest = zipfile.ZipFile(io.BytesIO(data)).read("reviews/cytoedge-reviews.csv").decode()
    rows = list(csv.DictReader(io.StringIO(manifest)))
    assert rows and rows[0]["reviewer"] == "'@SUM(A1)" and rows[0]["note"] == "'-2+3"
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for v in r.values())
    report = client.get("/slides/demo/report.csv").get_data(as_text=True)
    assert not any(v.startswith(("=", "+", "@")) for row in csv.reader(io.StringIO(report)) for v in row)


@pytest.mark.parametrize("value, safe", [("=1+1", "'=1+1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("a=1", "a=1"),
                                         (-3, -3), (0.5, 0.5)])
def test_neutral(value, safe):
    assert neutral(value) == safe


# -- Hypothesis over what the web view reads -------------------------------------------------------

HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
json_scalars = st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats() | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(max_size=8), v,
                                                                                          max_size=3), max_leaves=6)


@HYP
@given(body=st.fixed_dictionaries({}, optional={"cell": json_values, "label": json_values, "confirm": json_values,
                                                 "reviewer": json_values, "note": json_values}))
def test_any_review_body_is_stored_only_when_valid_and_never_a_500(client, store_dir, body):
    before = review_count(store_dir)
    r = post_review(client, body)
    assert r.status_code in (201, 400, 404), (body, r.status_code)
    if r.status_code == 201:
        got = r.get_json()
        cell = body["cell"]
        assert not isinstance(cell, bool) and int(str(cell).strip()) == got["cell_id"]
        assert review_count(store_dir) == before + 1
    else:
        assert review_count(store_dir) == before


@HYP
@given(path=st.text(max_size=40), query=st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3))
def test_any_path_and_query_is_answered_without_a_500(client, path, query):
    # the server decodes the path back; a leading "//" would make the test client read it as a host name
    r = client.get("/" + quote(path, safe="/").lstrip("/"), query_string=query)
    assert r.status_code < 500, (path, query, r.status_code)


@HYP
@given(path=st.text(max_size=40))
def test_the_login_redirect_stays_on_the_site_for_any_path(store_dir, path):
    app = create_app(WebConfig(store=store_dir, token=TOKEN))
    r = app.test_client().get("/" + quote(path, safe="/\\"), query_string={"token": TOKEN})
    assert r.status_code in (303, 400, 404), r.status_code
    if r.status_code == 303:
        assert _local(r.headers["Location"]), r.headers["Location"]
