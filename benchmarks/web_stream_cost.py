"""What the web view's live stream costs the device, and how heavy its pages are.

    python -m cytoedge.benchmarks.web_stream_cost [--seconds 6] [--size 2028x1520] [--capture-fps 8] [--view-fps 5]

1. Per frame: what publishing costs the capture loop (it keeps a reference), and what
   drawing + shrinking + JPEG-encoding one frame costs the request that asks for it.
2. Whole process, ``--seconds`` each: a publisher thread stands in for the capture
   loop (``--capture-fps``, one pre-made field with 30 boxes); the real web server
   runs in this process; one viewer runs in a *separate* process (its CPU is not
   counted) and asks for frames like the live page does:
   - ``none``: nobody watching (the baseline);
   - ``periodic``: the live page's protocol: ``/live/frame.jpg?after=V`` (held until a
     newer frame exists), then wait out 1/``--view-fps``;
   - ``mjpeg``: a ``multipart/x-mixed-replace`` stream at ``--view-fps`` (added here for
     the comparison only; the web view does not serve it);
   every viewer also asks for ``/api/live`` (the counts) once a second;
   - ``periodic x3``: three viewers on the live page's protocol.
   CPU is this process's user + system time over the wall time, in % of one core.
3. Page weight: the HTML of each page (a store with one slide of 24 crops to review),
   the script, the stylesheet and one crop, raw and gzipped.

The figures are for this machine; run it on the board to get the board's.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CLIENT = r"""
import sys, threading, time, urllib.request
base, mode, fps, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
n = nbytes = 0
end = time.monotonic() + seconds

def counts():  # the live page asks for the counts once a second, whichever way frames come
    while time.monotonic() < end:
        urllib.request.urlopen(f"{base}/api/live", timeout=10).read()
        time.sleep(1.0)

threading.Thread(target=counts, daemon=True).start()
if mode == "periodic":
    v = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{base}/live/frame.jpg?after={v}", timeout=10) as r:
            if r.status == 200:
                data = r.read()
                v, n, nbytes = int(r.headers["X-Frame-Version"]), n + 1, nbytes + len(data)
        left = 1.0 / fps - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
else:
    r = urllib.request.urlopen(f"{base}/bench/stream.mjpg", timeout=10)
    while time.monotonic() < end:
        chunk = r.read1(65536)
        if not chunk:
            break
        nbytes += len(chunk)
        n += chunk.count(b"--frame\r\n")
    r.close()
print(n, nbytes)
"""


def synthetic_field(w: int, h: int, n_cells: int = 30, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A pale, noisy field with stained blobs (JPEG sizes like a real field's), and their boxes."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(225, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    boxes = []
    r = max(8, w // 40)
    for _ in range(n_cells):
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        colour = tuple(int(c) for c in rng.integers(90, 200, 3))
        cv2.ellipse(img, (cx, cy), (r, int(r * 0.8)), float(rng.integers(0, 180)), 0, 360, colour, -1)
        cv2.circle(img, (cx, cy), r // 3, (90, 40, 110), -1)
        boxes.append((cx - r, cy - r, 2 * r, 2 * r))
    return cv2.GaussianBlur(img, (5, 5), 0), boxes


def per_frame_costs(image: np.ndarray, boxes, preview_width: int, repeats: int = 20) -> dict[str, float]:
    from cytoedge.edge_app.web.live import LiveState

    live = LiveState(preview_width=preview_width)
    labels, groups = ["koilocytotic 0.81"] * len(boxes), ["abnormal"] * len(boxes)
    pub, enc, size = [], [], 0
    for i in range(repeats):
        t0 = time.perf_counter()
        live.publish(slide="bench", frame_no=i, name=f"f{i}", image=image, boxes=boxes, labels=labels, groups=groups,
                     status=f"frame {i} | 8.0 frames/s", fps=8.0)
        t1 = time.perf_counter()
        _, jpg = live.wait_frame(i, timeout=1.0)
        t2 = time.perf_counter()
        pub.append(t1 - t0)
        enc.append(t2 - t1)
        size = len(jpg)
    return {"publish_us": statistics.median(pub) * 1e6, "encode_ms": statistics.median(enc) * 1e3, "jpeg_kb": size / 1024}


def _bench_store(folder: Path, crop: np.ndarray, n: int = 24) -> None:
    from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS
    from cytoedge.edge_app.store import CellResult, Store

    with Store(folder) as s:
        s.open_slide("bench", list(SIPAKMED_CLASSES), dict(SIPAKMED_GROUPS))
        run = s.start_run("bench", source="synthetic", model="-", model_sha256="0" * 64, fmt="tflite-int8", board="-",
                          threads=1, settings={})
        cells = [CellResult((0, 0, 64, 64), "koilocytotic", "abnormal", 0.5 + i / 100, 1.0, False) for i in range(n)]
        s.add_frame("bench", run, name="field.png", size=(640, 480), cells=cells, crops=[crop] * n)


def stream_cpu(image: np.ndarray, boxes, args: argparse.Namespace, store: Path) -> list[dict[str, float | str]]:
    import psutil
    from flask import Response
    from cytoedge.edge_app.web.app import WebConfig, create_app
    from cytoedge.edge_app.web.live import LiveState
    from cytoedge.edge_app.web.server import WebServer

    live = LiveState(preview_width=args.preview_width)
    cfg = WebConfig(store=store, live=live)
    app = create_app(cfg)
    stop = threading.Event()

    def mjpeg() -> Response:
        def frames():
            v = 0
            while not stop.is_set():
                t0 = time.monotonic()
                got = live.wait_frame(v, timeout=1.0)
                if got:
                    v, jpg = got
                    yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpg), jpg)
                time.sleep(max(0.0, 1.0 / args.view_fps - (time.monotonic() - t0)))
        return Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")

    app.add_url_rule("/bench/stream.mjpg", "bench_mjpeg", mjpeg)
    srv = WebServer(cfg, "127.0.0.1", 0, app=app).start()  # the device's own server (waitress)
    base = f"http://127.0.0.1:{srv.port}"
    labels, groups = ["koilocytotic 0.81"] * len(boxes), ["abnormal"] * len(boxes)

    def capture() -> None:
        i = 0
        while not stop.is_set():
            live.publish(slide="bench", frame_no=i, name=f"f{i}", image=image, boxes=boxes, labels=labels,
                         groups=groups, status=f"frame {i}", fps=args.capture_fps)
            i += 1
            stop.wait(1.0 / args.capture_fps)

    threading.Thread(target=capture, daemon=True).start()
    me = psutil.Process(os.getpid())
    rows = []
    try:
        for name, mode, viewers in (("none", "", 0), ("periodic", "periodic", 1), ("mjpeg", "mjpeg", 1),
                                    ("periodic x3", "periodic", 3)):
            clients = [subprocess.Popen([sys.executable, "-c", CLIENT, base, mode, str(args.view_fps), str(args.seconds)],
                                        stdout=subprocess.PIPE, text=True) for _ in range(viewers)]
            enc0, c0, t0 = live.encoded, me.cpu_times(), time.perf_counter()
            if not clients:
                time.sleep(args.seconds)
            outs = [p.communicate(timeout=args.seconds + 30)[0].split() for p in clients]
            wall, c1 = time.perf_counter() - t0, me.cpu_times()
            cpu = max(0.0, (c1.user + c1.system - c0.user - c0.system) / wall * 100)
            frames = sum(int(o[0]) for o in outs)
            kb = sum(int(o[1]) for o in outs) / 1024
            rows.append({"viewers": name, "cpu_pct": cpu, "frames_per_s": frames / wall,
                         "encoded_per_s": (live.encoded - enc0) / wall, "kb_per_s": kb / wall})
    finally:
        stop.set()
        srv.stop()
    return rows


def page_weights(store: Path) -> list[tuple[str, int, int]]:
    from cytoedge.edge_app.web.app import WebConfig, create_app
    from cytoedge.edge_app.web.live import LiveState

    c = create_app(WebConfig(store=store, live=LiveState())).test_client()
    out = []
    for label, path in (("live page", "/live"), ("slides page", "/slides"), ("slide report", "/slides/bench"),
                        ("review queue (24 crops)", "/review"), ("cytoedge.js", "/static/cytoedge.js"),
                        ("cytoedge.css", "/static/cytoedge.css"), ("one crop", "/crop/1.png"),
                        ("/api/live", "/api/live")):
        data = c.get(path).data
        out.append((label, len(data), len(gzip.compress(data))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import platform

    import cv2

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.web_stream_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="wall time per scenario")
    p.add_argument("--size", default="2028x1520", help="camera frame WIDTHxHEIGHT (default: the Pi HQ camera mode)")
    p.add_argument("--capture-fps", type=float, default=8.0, help="frames the stand-in capture loop publishes per s")
    p.add_argument("--view-fps", type=float, default=5.0, help="frames a viewer asks for per s (the live page's 5)")
    p.add_argument("--preview-width", type=int, default=1024,
                   help="the stream is shrunk by a whole factor to at most this width (the app's 1024)")
    p.add_argument("--frame", type=Path, help="use this image as the field instead of a synthetic one")
    args = p.parse_args(argv)
    w, _, h = args.size.partition("x")
    image, boxes = synthetic_field(int(w), int(h))
    if args.frame:
        image = cv2.imread(str(args.frame))
        if image is None:
            p.error(f"cannot read --frame {args.frame}")
    print(f"web stream cost on {platform.machine()} ({os.cpu_count()} cores), frame {image.shape[1]}x{image.shape[0]}, "
          f"{len(boxes)} boxes, preview width {args.preview_width}, capture {args.capture_fps:g} frames/s, "
          f"viewer {args.view_fps:g} frames/s, OpenCV {cv2.__version__}")
    f = per_frame_costs(image, boxes, args.preview_width)
    print(f"\nper frame: publish (capture loop) {f['publish_us']:.1f} us; draw + shrink + JPEG (request) "
          f"{f['encode_ms']:.1f} ms -> {f['jpeg_kb']:.0f} KB; encoding every frame in the capture loop instead would "
          f"cost {f['encode_ms'] * args.capture_fps / 10:.1f} % of a core at {args.capture_fps:g} frames/s")
    with tempfile.TemporaryDirectory() as tmp:
        crop = cv2.resize(image[:200, :200], (96, 96))
        _bench_store(Path(tmp) / "store", crop)
        rows = stream_cpu(image, boxes, args, Path(tmp) / "store")
        print(f"\n{'viewers':<14}{'CPU % of a core':>16}{'frames/s shown':>16}{'encoded/s':>11}{'KB/s sent':>11}")
        base = rows[0]["cpu_pct"]
        for r in rows:
            extra = f"  (+{r['cpu_pct'] - base:.1f})" if r is not rows[0] else ""
            print(f"{r['viewers']:<14}{r['cpu_pct']:>16.1f}{r['frames_per_s']:>16.1f}{r['encoded_per_s']:>11.1f}"
                  f"{r['kb_per_s']:>11.0f}{extra}")
        print(f"\n{'page weight':<26}{'bytes':>9}{'gzipped':>9}")
        for label, raw, gz in page_weights(Path(tmp) / "store"):
            print(f"{label:<26}{raw:>9}{gz:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
