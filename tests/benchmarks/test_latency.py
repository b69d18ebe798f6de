"""Latency statistics: percentiles, throughput, outliers counted (never dropped); the run loop's stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.benchmarks.latency import LatencyOptions, measure, summarize


def test_summary_of_known_times_counts_the_outlier_and_keeps_it_in_the_statistics():
    times = [0.010] * 19 + [0.050]  # 19 runs of 10 ms, one of 50 ms
    s = summarize(times, batch=4)
    assert s.runs == 20 and s.min_ms == pytest.approx(10) and s.max_ms == pytest.approx(50)
    assert s.p50_ms == pytest.approx(10)
    assert s.mean_ms == pytest.approx(12)  # the outlier stays in the mean
    assert s.outliers == 1 and s.outlier_max_ms == pytest.approx(50)
    assert s.throughput_ips == pytest.approx(4 * 1000 / 12)  # images per second = batch / mean
    assert len(s.times_ms) == 20


def test_percentiles_follow_numpy_on_spread_times():
    rng = np.random.default_rng(0)
    t = rng.gamma(4.0, 0.002, 500)
    s = summarize(t)
    for q, got in ((50, s.p50_ms), (90, s.p90_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(t, q) * 1e3)
    assert s.std_ms == pytest.approx(np.std(t, ddof=1) * 1e3)
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms


def test_measure_warms_up_then_runs_until_both_minimums_are_met():
    calls = []
    s = measure(lambda: calls.append(1), LatencyOptions(warmup=3, min_time=0.0, min_runs=7))
    assert s.runs == 7 and len(calls) == 10  # 3 untimed + 7 timed

    s = measure(lambda: None, LatencyOptions(warmup=0, min_time=0.05, min_runs=1))
    # kept going until 50 ms had passed: every run but the last started before then (a bound on the total
    # would time the host: one run preempted by another process takes what it takes)
    assert sum(s.times_ms[:-1]) < 50 and s.runs > 1


def test_bad_options_and_empty_runs_are_refused():
    with pytest.raises(ValueError):
        LatencyOptions(min_runs=0)
    with pytest.raises(ValueError):
        summarize([])
