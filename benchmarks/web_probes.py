"""The web view against a hostile network: threads under a connection flood, and what each probe gets.

    python -m cytoedge.benchmarks.web_probes [--connections 400]

Runs ``edge-app serve`` (waitress, the default limits) on a small store as its own process, then:

1. opens ``--connections`` connections that each send half a request line and nothing more, and reads
   the server process's thread count (``/proc/PID/status``) before and during the flood, and how long a
   normal request then waits to be answered;
2. sends the probes of issue 12 and prints the status each gets: a cell id of 10^23, ``"cell": true``,
   ``/%09/evil.example?token=T`` (its Location), CR/LF in the path, a huge header, a huge body;
3. starts a second server on 127.0.0.2 without ``--token`` and uses the token it printed.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def _store(folder: Path) -> None:
    import numpy as np

    from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS
    from cytoedge.edge_app.store import CellResult, Store

    with Store(folder) as s:
        s.open_slide("demo", list(SIPAKMED_CLASSES), dict(SIPAKMED_GROUPS))
        run = s.start_run("demo", source="x", model="m", model_sha256="0" * 64, fmt="tflite-int8", board="b",
                          threads=1, settings={})
        cells = [CellResult((10, 10, 30, 30), "koilocytotic", "abnormal", 0.7, 1.0, False)]
        s.add_frame("demo", run, name="field.png", size=(640, 480), cells=cells, crops=[np.zeros((32, 32, 3), np.uint8)])
        s.end_run(run, {})


def _serve(store: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "cytoedge.edge_app", "serve", "--out", str(store), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://[^ ]+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"edge-app serve did not start: {line!r}")
    return proc, m.group(1)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def _raw(port: int, data: bytes, host: str = "127.0.0.1") -> str:
    with socket.create_connection((host, port), timeout=30) as s:
        try:
            s.sendall(data)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
    head = got.split(b"\r\n")
    where = [h.decode() for h in head if h.lower().startswith(b"location:")]
    return head[0].decode() + (f" ({where[0]})" if where else "")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.web_probes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=400)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="web-probes-"))
    _store(work / "store")

    proc, url = _serve(work / "store")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    try:
        time.sleep(0.5)
        idle = _threads(proc.pid)
        conns = []
        for _ in range(a.connections):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /api/slides HTTP/1.1\r\nHo")
            conns.append(c)
        time.sleep(1.0)
        flood = _threads(proc.pid)
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{url}api/slides", timeout=120) as r:
            status = r.status
        waited = time.monotonic() - t0
        for c in conns:
            c.close()
        print(f"threads of the server process: {idle} idle, {flood} with {a.connections} half-open connections "
              f"(Werkzeug's threaded server: one more per connection); a normal request during the flood: "
              f"{status} after {waited:.1f} s")

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{url}review", timeout=10).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        rows = []
        for name, body in (("cell 10^23", {"cell": 10**23, "label": "koilocytotic", "reviewer": "A"}),
                           ('"cell": true', {"cell": True, "label": "koilocytotic", "reviewer": "A"})):
            req = urllib.request.Request(f"{url}api/reviews", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Origin": url.rstrip("/"),
                                                  "X-CSRF-Token": csrf})
            try:
                got = opener.open(req, timeout=10).status
            except urllib.error.HTTPError as exc:
                got = exc.code
            rows.append((name, str(got)))
        get = lambda target: _raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")  # noqa: E731
        rows.append(("CR/LF in the path", get(b"/%0d%0aSet-Cookie:%20x=1")))
        rows.append(("a raw CR in the request line", get(b"/re\rview")))
        rows.append(("crop id 10^23", get(b"/crop/" + str(10**23).encode() + b".png")))
        rows.append(("a 40 KB header", _raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 40000
                                            + b"\r\n\r\n")))
        rows.append(("a 200 KB body", _raw(port, b"POST /api/reviews HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                               b"Content-Length: 200000\r\n\r\n{")))
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    proc, url = _serve(work / "store", "--token", TOKEN)
    port = int(url.split(":")[2].split("/")[0])
    try:
        rows.append(("/%09/evil.example?token=T", _raw(port, f"GET /%09/evil.example?token={TOKEN} HTTP/1.1\r\n"
                                                             "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())))
        rows.append(("//evil.example?token=T", _raw(port, f"GET //evil.example?token={TOKEN} HTTP/1.1\r\n"
                                                          "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())))
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    proc, url = _serve(work / "store", "--host", "127.0.0.2")
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(url, timeout=10) as r:  # the printed address: cookie, then the page
            rows.append(("127.0.0.2, printed address with its token", f"{r.status} {r.url.split('?')[0]}"))
        try:
            urllib.request.urlopen(url.split("?")[0] + "api/slides", timeout=10)
            rows.append(("127.0.0.2 without the token", "200"))
        except urllib.error.HTTPError as exc:
            rows.append(("127.0.0.2 without the token", str(exc.code)))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print()
    for name, got in rows:
        print(f"{name:45s} {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
