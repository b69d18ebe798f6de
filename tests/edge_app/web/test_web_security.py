"""The web view's security: token on every route, CSRF + Origin on every state change, no path traversal."""

from __future__ import annotations

import os
import sqlite3

import pytest
from webstore import ORIGIN, TOKEN, csrf_of

from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.store import DB_FILE
from cytoedge.edge_app.web.security import TOKEN_HEADER, is_local, resolve_token

GET_ROUTES = ["/", "/live", "/live/frame.jpg", "/slides", "/slides/demo", "/slides/demo/report.csv",
              "/slides/demo/report.json", "/review", "/crop/1.png", "/reviews/export.zip", "/api/live",
              "/api/slides", "/api/slides/demo", "/api/queue", "/api/reviews", "/static/cytoedge.js",
              "/static/cytoedge.css", "/no-such-page", "/static/../app.py"]


def review_count(store_dir) -> int:
    with sqlite3.connect(store_dir / DB_FILE) as conn:
        return conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_route_without_token_is_a_bare_401(token_client, path):
    for headers in ({}, {TOKEN_HEADER: "wrong-token-0123456789"}, {"Authorization": "Bearer nope"}):
        r = token_client.get(path, headers=headers)
        assert r.status_code == 401 and r.data == b"", (path, headers)


def test_post_without_token_is_401_and_stores_nothing(token_client, store_dir):
    r = token_client.post("/review", data={"cell": "1", "label": "parabasal", "reviewer": "x"},
                          headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.data == b""
    r = token_client.post("/api/reviews", json={"cell": 1, "label": "parabasal", "reviewer": "x"},
                          headers={"Origin": ORIGIN})
    assert r.status_code == 401 and review_count(store_dir) == 0


def test_token_by_header_bearer_or_cookie(token_client):
    assert token_client.get("/api/slides", headers={TOKEN_HEADER: TOKEN}).status_code == 200
    assert token_client.get("/api/slides", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    token_client.set_cookie("cytoedge_token", "wrong-token-0123456789")
    assert token_client.get("/api/slides").status_code == 401
    token_client.set_cookie("cytoedge_token", TOKEN)
    assert token_client.get("/api/slides").status_code == 200


def test_printed_address_sets_a_strict_cookie_and_drops_the_token(token_client):
    r = token_client.get(f"/review?slide=demo&token={TOKEN}")
    assert r.status_code == 303 and r.headers["Location"].endswith("/review?slide=demo")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"cytoedge_token={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert token_client.get("/review?slide=demo").status_code == 200  # the cookie now carries it
    assert token_client.get("/slides?token=wrong-token-0123456789").status_code == 401


@pytest.mark.parametrize("path, local", [("//evil.example/", "/evil.example/"),
                                         ("/\\evil.example/", "/%5Cevil.example/")])
def test_login_redirect_never_leaves_the_site(token_client, path, local):
    r = token_client.get(f"{path}?token={TOKEN}")
    assert r.status_code == 303
    assert r.headers["Location"] in (local, f"http://localhost{local}", "/", "http://localhost/")  # "//host/": "/"


def test_loopback_answers_only_its_own_host_names(client):
    assert client.get("/api/slides", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert client.get("/api/slides", headers={"Host": "localhost:8080"}).status_code == 200
    assert client.get("/api/slides", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding


def test_token_rules():
    assert resolve_token("127.0.0.1", None) is None
    made = {resolve_token("0.0.0.0", None) for _ in range(3)}
    assert len(made) == 3 and all(len(t) >= 16 for t in made)
    assert resolve_token("192.168.1.20", TOKEN) == TOKEN
    with pytest.raises(CytoEdgeError, match="at least 16"):
        resolve_token("0.0.0.0", "short")
    with pytest.raises(CytoEdgeError):
        resolve_token("0.0.0.0", "spaces are not allowed here!")
    assert not is_local("127.0.0.5") and not is_local("::1") and not is_local("pi.local")  # these get a token


# -- forgery -------------------------------------------------------------------------------------
def _form(cell: int, **extra: str) -> dict[str, str]:
    return {"cell": str(cell), "label": "dyskeratotic", "reviewer": "Ana", **extra}


def test_review_needs_same_origin_and_the_session_csrf_token(client, store_dir):
    csrf = csrf_of(client)
    cell = 1
    attempts = [
        ({}, _form(cell, csrf=csrf)),  # no Origin, no Referer
        ({"Origin": "http://evil.example"}, _form(cell, csrf=csrf)),
        ({"Origin": "null"}, _form(cell, csrf=csrf)),
        ({"Referer": "http://evil.example/review"}, _form(cell, csrf=csrf)),
        ({"Origin": ORIGIN}, _form(cell)),  # no CSRF token
        ({"Origin": ORIGIN}, _form(cell, csrf="x" * 43)),  # a wrong one
    ]
    for headers, form in attempts:
        r = client.post("/review", data=form, headers=headers)
        assert r.status_code == 403, headers
    assert review_count(store_dir) == 0
    assert client.post("/review", data=_form(cell, csrf=csrf), headers={"Origin": ORIGIN}).status_code == 303
    assert client.post("/review", data=_form(cell, csrf=csrf),
                       headers={"Referer": f"{ORIGIN}/review"}).status_code == 303
    assert review_count(store_dir) == 2


def test_csrf_token_is_tied_to_the_session(store_dir, client):
    from cytoedge.edge_app.web.app import WebConfig, create_app

    stolen = csrf_of(client)
    other = create_app(WebConfig(store=store_dir)).test_client()
    csrf_of(other)  # the other browser has a session of its own
    r = other.post("/review", data=_form(1, csrf=stolen), headers={"Origin": ORIGIN})
    assert r.status_code == 403 and review_count(store_dir) == 0


def test_session_cookie_is_strict_and_httponly(client):
    r = client.get("/review")
    cookie = next(v for k, v in r.headers.items() if k == "Set-Cookie" and v.startswith("cytoedge_session="))
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie


def test_state_changes_only_by_post(client, store_dir):
    for path in ("/review?cell=1&label=dyskeratotic&reviewer=x", "/api/reviews?cell=1&label=dyskeratotic&reviewer=x"):
        client.get(path)
    assert client.put("/api/reviews", json={}, headers={"Origin": ORIGIN}).status_code in (403, 405)
    assert review_count(store_dir) == 0


def test_json_api_needs_the_csrf_header(client, store_dir):
    body = {"cell": 1, "label": "dyskeratotic", "reviewer": "Ana"}
    assert client.post("/api/reviews", json=body, headers={"Origin": ORIGIN}).status_code == 403
    csrf = csrf_of(client)
    r = client.post("/api/reviews", json=body, headers={"Origin": ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 201 and review_count(store_dir) == 1


def test_pages_carry_protective_headers(client):
    h = client.get("/slides").headers
    assert "script-src 'self'" in h["Content-Security-Policy"] and "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"


# -- paths ----------------------------------------------------------------------------------------
TRAVERSALS = ["/crop/../cytoedge.sqlite", "/crop/..%2fcytoedge.sqlite", "/crop/%2e%2e/cytoedge.sqlite",
              "/crop/%2e%2e%2fcytoedge.sqlite", "/crop/%252e%252e%252fcytoedge.sqlite", "/crop/..%252fcytoedge.sqlite",
              "/crop//etc/passwd", "/crop/%2fetc%2fpasswd", "/crop/-1.png", "/crop/1.png/../../cytoedge.sqlite",
              "/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/%2e%2e%2fapp.py",
              "/static/%252e%252e%252fapp.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
              "/static/..\\app.py", "/static/....//app.py"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_traversal(client, path):
    r = client.get(path)
    body = r.get_data()
    assert r.status_code in (400, 404, 405, 308), path
    assert b"SQLite format" not in body and b"root:" not in body and b"create_app" not in body


def test_crop_served_only_from_the_store_crops_folder(client, store_dir, tmp_path):
    with sqlite3.connect(store_dir / DB_FILE) as conn:
        ok, up, absolute, link = [r[0] for r in conn.execute(
            "SELECT id FROM cells WHERE crop_path IS NOT NULL ORDER BY id LIMIT 4")]
        r = client.get(f"/crop/{ok}.png")
        assert r.status_code == 200 and r.data.startswith(b"\x89PNG")
        outside = tmp_path / "secret.png"
        outside.write_bytes(b"\x89PNG secret")
        os.symlink(outside, store_dir / "crops" / "demo" / "link.png")
        conn.execute("UPDATE cells SET crop_path = '../cytoedge.sqlite' WHERE id = ?", (up,))
        conn.execute("UPDATE cells SET crop_path = ? WHERE id = ?", (str(outside), absolute))
        conn.execute("UPDATE cells SET crop_path = 'crops/demo/link.png' WHERE id = ?", (link,))
    for cell in (up, absolute, link, 999999):
        r = client.get(f"/crop/{cell}.png")
        assert r.status_code == 404 and b"secret" not in r.data and b"SQLite" not in r.data
