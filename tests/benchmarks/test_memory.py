"""Peak RSS can be reset, so a configuration's peak is measured from its own baseline."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.benchmarks.memory import MemoryTrace, peak_rss_bytes, reset_peak, rss_bytes


def test_peak_rises_with_an_allocation_and_falls_back_after_a_reset():
    if not reset_peak():
        pytest.fail("this Linux kernel refuses /proc/self/clear_refs: the peak cannot be measured per stage")
    base = rss_bytes()
    block = np.ones(64 << 20, np.uint8)  # 64 MB, touched
    del block
    assert peak_rss_bytes() - base >= 60 << 20
    assert reset_peak()
    assert peak_rss_bytes() - rss_bytes() < 8 << 20


def test_trace_figures_are_increases_over_the_post_import_baseline():
    t = MemoryTrace(start_bytes=100, after_import_bytes=1_000, after_load_bytes=1_500, load_peak_bytes=1_700,
                    run_peak_bytes=2_000, peak_reset=True)
    f = t.figures()
    assert f["rss_runtime_import_bytes"] == 900
    assert f["rss_load_bytes"] == 500 and f["rss_load_peak_increase_bytes"] == 700
    assert f["rss_peak_increase_bytes"] == 1_000 and f["rss_peak_bytes"] == 2_000
