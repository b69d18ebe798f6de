"""The board's compute peak (benchmarks.peak): a one-op model built from LiteRT's schema, and the roofline."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.benchmarks.flops import count_tflite
from cytoedge.benchmarks.peak import PeakShape, conv_model, measure_peak, roofline

SMALL = PeakShape(4, 5, 64, 24)


def _weights(content: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    graph_model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    g = graph_model.subgraphs[0]
    raw = [bytes(graph_model.buffers[g.tensors[i].buffer].data) for i in (1, 2)]
    return g, raw


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_the_peak_model_computes_the_convolution_it_claims(dtype):
    from ai_edge_litert.interpreter import Interpreter

    content = conv_model(SMALL, dtype)
    it = Interpreter(model_content=content, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    rng = np.random.default_rng(3)
    x = (rng.integers(-128, 128, d["shape"]).astype(np.int8) if dtype == "int8"
         else rng.standard_normal(d["shape"]).astype(np.float32))
    it.set_tensor(d["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1, SMALL.cout)
    g, (w_raw, b_raw) = _weights(content)
    xs = x.reshape(-1, SMALL.cin)
    if dtype == "int8":
        w = np.frombuffer(w_raw, np.int8).reshape(SMALL.cout, SMALL.cin).astype(np.int64)
        acc = xs.astype(np.int64) @ w.T + np.frombuffer(b_raw, np.int32)
        real = acc * g.tensors[0].quantization.scale[0] * np.asarray(g.tensors[1].quantization.scale)
        ref = np.clip(np.round(real / g.tensors[3].quantization.scale[0]), -128, 127)
        np.testing.assert_array_equal(y, ref)
        assert y.std() > 1  # not a saturated or constant output
    else:
        w = np.frombuffer(w_raw, np.float32).reshape(SMALL.cout, SMALL.cin)
        np.testing.assert_allclose(y, xs @ w.T + np.frombuffer(b_raw, np.float32), rtol=1e-4, atol=1e-4)


def test_its_macs_are_what_the_graph_counter_counts(tmp_path):
    path = tmp_path / "peak.tflite"
    path.write_bytes(conv_model(SMALL, "int8"))
    assert count_tflite(path).macs == SMALL.macs == 4 * 5 * 64 * 24


def test_measure_peak_reports_each_precision_per_thread_count():
    from cytoedge.benchmarks.latency import LatencyOptions

    peak = measure_peak([1, 2], LatencyOptions(warmup=1, min_time=0, min_runs=3), shape=SMALL)
    assert peak["macs"] == SMALL.macs and peak["shape"] == [4, 5, 64, 24]
    for dtype in ("int8", "fp32"):
        assert set(peak[dtype]) == {"1", "2"}
        for v in peak[dtype].values():
            assert v["runs"] >= 3 and v["gmacs_per_s"] == pytest.approx(SMALL.macs / v["p50_ms"] / 1e6)
            assert v["best_gmacs_per_s"] >= v["gmacs_per_s"] > 0


def test_roofline_uses_the_peak_of_the_rows_precision_and_thread_count():
    peak = {"int8": {"1": {"gmacs_per_s": 400.0}, "2": {"gmacs_per_s": 800.0}}, "fp32": {"2": {"gmacs_per_s": 100.0}}}
    row = {"format": "tflite-fp32", "threads": 2, "batch": 4, "status": "ok", "latency": {"p50_ms": 8.0}}
    r = roofline(row, 1e8, peak)
    assert r == {"gmacs_per_s": 50.0, "peak_gmacs_per_s": 100.0, "fraction_of_peak": 0.5}
    assert roofline({**row, "format": "tflite-int8", "threads": 1}, 1e8, peak)["fraction_of_peak"] == 0.125
    assert roofline({**row, "threads": 1}, 1e8, peak)["fraction_of_peak"] is None  # no fp32 peak at 1 thread
    assert roofline({**row, "status": "failed"}, 1e8, peak) is None
