"""The report's roofline and input-size sections, from result documents written by hand."""

from __future__ import annotations

from cytoedge.benchmarks.report import input_size_rows, merge, roofline_rows

BOARD = {"slug": "pi5", "title": "Raspberry Pi 5", "name": "rpi5"}


def _model(name: str, size: int, macs: float, acc: float) -> dict:
    return {"name": name, "architecture": "shufflenet_v2_x1_0", "input_size": size,
            "artifacts": {"tflite-int8": {"size_bytes": 1, "cost": {"macs": macs, "flops": 2 * macs}}},
            "accuracy": {"tflite-int8": {"status": "ok", "accuracy": acc, "n": 500}}}


def _row(name: str, threads: int, p50: float) -> dict:
    return {"model": name, "format": "tflite-int8", "threads": threads, "batch": 1, "status": "ok",
            "latency": {"p50_ms": p50}}


def _doc(created: str, models: list, rows: list, peak: dict | None) -> dict:
    return {"created": created, "board": BOARD, "models": models, "rows": rows, "peak": peak}


def test_input_size_rows_mark_the_pareto_front_of_each_architecture():
    models = [_model("s96", 96, 2.7e7, 0.55), _model("s128", 128, 4.7e7, 0.66), _model("s160", 160, 7.4e7, 0.64),
              _model("s224", 224, 1.44e8, 0.67)]
    rows = [_row("s96", 2, 0.2), _row("s128", 2, 0.3), _row("s160", 2, 0.45), _row("s224", 2, 0.8),
            _row("s224", 1, 1.3)]
    (view,) = merge([_doc("2026-12-01T10:00:00", models, rows, None)])
    got = {r["input px"]: r for r in input_size_rows(view)}
    assert list(got) == ["96", "128", "160", "224"]
    assert {k: r["Pareto"] for k, r in got.items()} == {"96": "yes", "128": "yes", "160": "", "224": "yes"}
    assert got["224"]["p50 ms"] == "0.80"  # the fastest thread count


def test_roofline_rows_use_the_newest_peak_and_each_rows_thread_count():
    models = [_model("s224", 224, 1.44e8, 0.67)]
    old = _doc("2026-12-01T10:00:00", models, [_row("s224", 1, 2.0)], {"int8": {"1": {"gmacs_per_s": 100.0}}})
    new = _doc("2026-12-02T10:00:00", models, [_row("s224", 2, 1.0)], {"int8": {"1": {"gmacs_per_s": 360.0},
                                                                                 "2": {"gmacs_per_s": 720.0}}})
    (view,) = merge([old, new])
    rows = {r["thr"]: r for r in roofline_rows(view)}
    assert rows["1"]["GMAC/s"] == "72.0" and rows["1"]["% of peak"] == "20.0"
    assert rows["2"]["GMAC/s"] == "144.0" and rows["2"]["% of peak"] == "20.0"
    (view,) = merge([_doc("2026-12-03T10:00:00", models, [_row("s224", 1, 2.0)], None)])
    assert roofline_rows(view) == []  # no peak measured: no roofline, rather than a guess
