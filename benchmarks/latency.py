"""Latency of a callable: warm-up, then enough timed runs for a minimum time and a minimum count.

Every run is timed with :func:`time.perf_counter`; the statistics cover *all* runs,
and the runs outside Tukey's fences (below Q1 - 1.5 IQR or above Q3 + 1.5 IQR) are
counted and reported as outliers, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyOptions:
    warmup: int = 10  # untimed runs before measuring (caches, XNNPACK packing, CPU governor)
    min_time: float = 2.0  # seconds of timed runs, at least
    min_runs: int = 50  # timed runs, at least
    max_runs: int = 100_000  # stop here even if min_time is not reached

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_runs < 1 or self.min_time < 0 or self.max_runs < self.min_runs:
            raise ValueError(f"latency options out of range: {self}")


@dataclass
class LatencyStats:
    """Milliseconds per invocation (one batch) over ``runs`` timed runs."""

    runs: int
    batch: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput_ips: float  # images per second = batch / mean
    outliers: int  # runs outside Tukey's fences
    outlier_max_ms: float  # the slowest outlier (0 when there is none)
    total_s: float
    times_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(times_s: np.ndarray | list[float], batch: int = 1) -> LatencyStats:
    """Statistics of per-run times given in seconds."""
    t = np.asarray(times_s, np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no timed runs to summarise")
    q1, p50, q3, p90, p99 = np.percentile(t, [25, 50, 75, 90, 99])
    iqr = q3 - q1
    out = t[(t < q1 - 1.5 * iqr) | (t > q3 + 1.5 * iqr)]
    mean = float(t.mean())
    return LatencyStats(
        runs=int(t.size), batch=batch, mean_ms=mean, std_ms=float(t.std(ddof=1)) if t.size > 1 else 0.0,
        min_ms=float(t.min()), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), max_ms=float(t.max()),
        throughput_ips=batch * 1e3 / mean if mean > 0 else float("inf"),
        outliers=int(out.size), outlier_max_ms=float(out.max()) if out.size else 0.0,
        total_s=float(t.sum() / 1e3), times_ms=[round(float(v), 4) for v in t])


def measure(fn: Callable[[], Any], opts: LatencyOptions = LatencyOptions(), batch: int = 1) -> LatencyStats:
    """Warm ``fn`` up, then time it until both ``opts.min_time`` and ``opts.min_runs`` are reached."""
    for _ in range(opts.warmup):
        fn()
    times: list[float] = []
    clock = time.perf_counter
    start = clock()
    while len(times) < opts.max_runs and (len(times) < opts.min_runs or clock() - start < opts.min_time):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return summarize(times, batch)
