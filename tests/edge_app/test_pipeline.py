"""The loop's threads (edge_app.pipeline) and the app on them: order kept, failures surface, a frame commits whole."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cytoedge.edge_app.app import AppOptions, run
from cytoedge.edge_app.errors import StoreError
from cytoedge.edge_app.pipeline import InOrderWriter, Prefetcher
from cytoedge.edge_app.store import Store


def test_prefetcher_works_one_item_ahead_in_its_own_thread_and_keeps_order():
    seen: list[tuple[int, str]] = []
    pulled = []

    def items():
        for i in range(5):
            pulled.append(i)
            yield i

    def work(i):
        seen.append((i, threading.current_thread().name))
        return i * i

    with Prefetcher(items(), work) as p:
        first = next(p)
        deadline = time.monotonic() + 30  # the reader thread reads ahead when the host schedules it
        while len(pulled) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # ... and then reads no further, however long this item takes
        assert first == 0 and pulled == [0, 1]  # the next item was read while this one is handled, no further
        assert list(p) == [1, 4, 9, 16]
    assert all(name.startswith("cytoedge-reader") for _, name in seen)


def test_prefetcher_raises_the_error_at_its_item_and_then_stops():
    def items():
        yield 1
        raise OSError("camera unplugged")

    p = Prefetcher(items(), lambda x: x)
    assert next(p) == 1
    with pytest.raises(OSError, match="camera unplugged"):
        next(p)
    assert list(p) == []
    p.close()


def test_writer_runs_in_order_and_skips_everything_after_a_failure():
    done: list[int] = []

    def job(i):
        def fn():
            if i == 2:
                raise StoreError("disk gone")
            time.sleep(0.01)
            done.append(i)
        return fn

    w = InOrderWriter(depth=2)
    with pytest.raises(StoreError, match="disk gone"):
        for i in range(6):
            w.submit(job(i))
        w.close()
    w.close(drain=False)
    assert done == [0, 1]  # nothing after the failed one ran


def test_writer_applies_back_pressure_and_a_hard_stop_drops_what_has_not_started():
    started, release = [], threading.Event()

    def slow(i):
        def fn():
            started.append(i)
            release.wait(5)
        return fn

    w = InOrderWriter(depth=2)
    w.submit(slow(0))
    w.submit(slow(1))
    t = threading.Thread(target=lambda: w.submit(slow(2)))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # two pending: the third submit waits
    release.set()
    t.join(5)
    w.close(drain=True)
    assert started == [0, 1, 2]
    release.clear()
    w2 = InOrderWriter(depth=3)
    for i in range(3):
        w2.submit(slow(i))
    deadline = time.monotonic() + 30  # the writer thread has started the first job (when the host schedules it)
    while len(started) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    threading.Timer(0.2, release.set).start()
    w2.close(drain=False)
    assert started[3:] == [0]  # the one in progress finished; the two waiting never ran


def test_frames_commit_in_source_order_and_their_lines_come_in_that_order(device_model, distinct_frames, tmp_path,
                                                                         caplog):
    source = distinct_frames(tmp_path / "frames", 7)
    (source / "frame_003.png").write_bytes(b"not a png")  # a skip between frames keeps its place too
    with caplog.at_level(logging.INFO, logger="cytoedge.edge_app"):
        s = run(AppOptions(model=device_model, source=str(source), slide="order", out=tmp_path / "store", threads=1))
    assert s.frames_read == 7 and s.frames_done == 6 and dict(s.skipped) == {"unreadable file": 1}
    st = Store(tmp_path / "store", create=False)
    rows = st.conn.execute("SELECT seq, name FROM frames ORDER BY seq").fetchall()
    st.close()
    names = [f"frame_{i:03d}.png" for i in range(7) if i != 3]
    assert [r[0] for r in rows] == list(range(6)) and [r[1] for r in rows] == names
    said = [m for m in caplog.messages if m.startswith("frame_") or m.startswith("skipped frame_")]
    assert [m.split(":")[0].removeprefix("skipped ") for m in said] == [f"frame_{i:03d}.png" for i in range(7)]


def test_a_store_failure_stops_the_run_and_leaves_the_frames_before_it(device_model, distinct_frames, tmp_path,
                                                                      monkeypatch):
    source = distinct_frames(tmp_path / "frames", 6)
    real = Store.add_frame
    calls = []

    def failing(self, *a, **kw):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise StoreError("cannot use store: disk I/O error")
        return real(self, *a, **kw)

    monkeypatch.setattr(Store, "add_frame", failing)
    with pytest.raises(StoreError, match="disk I/O error"):
        run(AppOptions(model=device_model, source=str(source), slide="fail", out=tmp_path / "store", threads=1))
    assert len(calls) == 3 and all(name.startswith("cytoedge-writer") for name in calls)
    monkeypatch.setattr(Store, "add_frame", real)
    st = Store(tmp_path / "store", create=False)
    assert [r[0] for r in st.conn.execute("SELECT name FROM frames ORDER BY seq")] == ["frame_000.png",
                                                                                        "frame_001.png"]
    assert st.conn.execute("SELECT ended FROM runs").fetchone()[0]  # the run's summary was still written
    st.close()
