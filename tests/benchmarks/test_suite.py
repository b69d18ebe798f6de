"""Run planning: the thread count that accuracy and frames reuse is the fastest one measured."""

from __future__ import annotations

from types import SimpleNamespace

from cytoedge.benchmarks.suite import fastest_threads


def _row(fmt, threads, batch, p50, status="ok"):
    return {"model": "m", "format": fmt, "threads": threads, "batch": batch, "status": status,
            "latency": {"p50_ms": p50}}


def test_fastest_threads_per_format_per_image():
    plan = SimpleNamespace(name="m", formats=["tflite-int8", "torch", "onnx"])
    rows = [_row("tflite-int8", 1, 1, 2.0), _row("tflite-int8", 4, 1, 0.9),
            _row("tflite-int8", 2, 8, 6.4),  # 0.8 ms per image at batch 8: the fastest
            _row("torch", 1, 1, 40.0), _row("torch", 4, 1, 400.0),  # oversubscribed: more threads, slower
            _row("onnx", 4, 1, 1.0, status="failed")]
    assert fastest_threads(rows, plan, [1, 2, 4]) == {"tflite-int8": 2, "torch": 1, "onnx": 4}
