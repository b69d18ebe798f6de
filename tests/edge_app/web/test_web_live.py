"""LiveState between the capture thread and web requests; the real HTTP server and the serve command."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from webstore import TOKEN

from cytoedge.edge_app.classes import GROUP_COLOURS_BGR
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.web.app import WebConfig
from cytoedge.edge_app.web.live import LiveState
from cytoedge.edge_app.web.security import TOKEN_HEADER
from cytoedge.edge_app.web.server import WebServer


def _frame(value: int = 200, w: int = 640, h: int = 480) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _publish(live: LiveState, n: int, image: np.ndarray | None = None, box=(100, 100, 200, 150)) -> None:
    live.publish(slide="s", frame_no=n, name=f"f{n}", image=_frame() if image is None else image, boxes=[box],
                 labels=["dyskeratotic 0.70"], groups=["abnormal"], status=f"frame {n}", fps=5.0)


def test_wait_frame_times_out_then_wakes_on_publish():
    live = LiveState()
    t0 = time.perf_counter()
    assert live.wait_frame(0, timeout=0.15) is None and time.perf_counter() - t0 >= 0.14
    threading.Timer(0.1, _publish, (live, 0)).start()
    t0 = time.perf_counter()
    got = live.wait_frame(0, timeout=60.0)
    assert got is not None and got[0] == 1 and time.perf_counter() - t0 < 60.0  # woken by the publish, not its timeout
    assert live.wait_frame(1, timeout=0.05) is None  # nothing newer than version 1


def test_frame_is_drawn_shrunk_and_encoded_once_for_all_viewers():
    live = LiveState(preview_width=320)
    _publish(live, 0, _frame(w=1280, h=960), box=(400, 400, 400, 300))
    a, b = live.wait_frame(0, 0.1), live.wait_frame(0, 0.1)
    assert a == b and live.encoded == 1
    img = cv2.imdecode(np.frombuffer(a[1], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)
    red = np.abs(img.astype(int) - np.array(GROUP_COLOURS_BGR["abnormal"])).max(axis=2) < 70
    ys, xs = np.nonzero(red)  # the box and its label, drawn in the abnormal colour at 1/4 scale
    assert len(xs) > 100 and 80 <= xs.min() <= 105 and 70 <= ys.min() <= 100 and ys.max() <= 180
    assert np.abs(img[200, 250].astype(int) - 200).max() < 12  # away from the box: the frame itself


def test_publishing_keeps_a_reference_and_costs_the_capture_loop_no_encoding():
    live = LiveState()
    image = _frame()
    for n in range(50):
        _publish(live, n, image)
    assert live.encoded == 0 and live.snapshot()["frames_done"] == 50 and live.version == 50


def test_concurrent_viewers_see_increasing_versions():
    live = LiveState(preview_width=160)
    seen: list[list[int]] = [[] for _ in range(3)]
    stop = threading.Event()

    def viewer(k: int) -> None:
        v = 0
        while not stop.is_set():
            got = live.wait_frame(v, timeout=0.2)
            if got:
                v = got[0]
                seen[k].append(v)

    threads = [threading.Thread(target=viewer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for n in range(60):
        _publish(live, n, _frame(n % 255, 320, 240))
        time.sleep(0.002)
    deadline = time.monotonic() + 30  # every viewer gets the last frame (as soon as the host schedules it)
    while not all(s and s[-1] == 60 for s in seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(5)
    for s in seen:
        assert s and s == sorted(set(s)) and s[-1] == 60
    assert live.encoded <= 60


def test_real_server_checks_the_token(tmp_path):
    with WebServer(WebConfig(store=tmp_path, token=TOKEN), "127.0.0.1", 0) as web:
        assert web.url == f"http://127.0.0.1:{web.port}/?token={TOKEN}"
        base = f"http://127.0.0.1:{web.port}"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/slides", timeout=5)
        assert e.value.code == 401 and e.value.read() == b""
        req = urllib.request.Request(f"{base}/api/slides", headers={TOKEN_HEADER: TOKEN})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and r.headers["Server"] == "CytoEdge"


def test_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        with pytest.raises(CytoEdgeError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*choose another --port"):
            WebServer(WebConfig(store=tmp_path), "127.0.0.1", s.getsockname()[1])


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/missing"], "no store at"),
    (["--out", "{store}", "--token", "short"], "at least 16 characters"),
    (["--out", "{store}", "--port", "70000"], "--port must be in 0-65535"),
    (["--out", "{store}", "--host", "no.such.host.invalid"], "is not an address of this machine"),
])
def test_serve_refuses_bad_input_in_one_line(args, message, tmp_path, store_dir, capsys):
    argv = [a.format(tmp=tmp_path, store=store_dir) for a in args]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("edge-app: error:") and err.count("\n") == 1


def test_web_capture_refuses_a_busy_port_and_a_bad_pace_before_loading_anything(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = str(s.getsockname()[1])
        assert main(["--model", str(tmp_path / "no-model"), "--source", str(tmp_path), "--out", str(tmp_path / "st"),
                     "--web", "--port", busy]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{busy}" in err and err.count("\n") == 1
    assert main(["--model", str(tmp_path / "no-model"), "--source", str(tmp_path), "--max-fps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-fps must be > 0" in err and err.count("\n") == 1
    assert not (tmp_path / "st").exists()


def test_serve_with_a_config_shows_the_verdict_report_gives(store_dir, tmp_path, capsys):
    """``edge-app serve --config F`` and ``edge-app report --config F`` judge a slide by the same [report] rule."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys

    from cytoedge.edge_app.report import TriageRule, build_report
    from cytoedge.edge_app.store import Store

    conf = tmp_path / "edge-app.toml"  # the demo slide: 24 cells, 6 abnormal (refer by the default rule)
    conf.write_text(f'out = "{store_dir}"\nport = 0\n'
                    '[report]\nrefer_abnormal_cells = 7\nrefer_abnormal_fraction = "30%"\nmin_cells = 10\n')
    assert main(["report", "--config", str(conf), "--slide", "demo", "--report-format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)["triage"]["verdict"]
    with Store(store_dir, create=False) as s:
        default = build_report(s, "demo", TriageRule(), 10)["triage"]["verdict"]
    assert verdict != default  # the file's rule matters for this slide

    proc = subprocess.Popen([sys.executable, "-m", "cytoedge.edge_app", "serve", "--config", str(conf)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        base = re.search(r"web view: (http://127\.0\.0\.1:\d+)", line)
        assert base, line
        with urllib.request.urlopen(f"{base.group(1)}/api/slides", timeout=10) as r:
            rows = {row["slide"]: row for row in json.loads(r.read())["slides"]}
        with urllib.request.urlopen(f"{base.group(1)}/api/slides/demo", timeout=10) as r:
            page = json.loads(r.read())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert rows["demo"]["triage"] == verdict and page["triage"]["verdict"] == verdict
