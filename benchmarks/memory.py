"""Memory: resident set size of this process, and its peak since a reset (Linux ``/proc``).

The peak (``VmHWM``) is reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux
>= 4.0), so the peak of loading and running one model is measured from a baseline
taken after the runtime library was imported. Where the reset is not possible the
peak falls back to ``getrusage`` (peak since the process started) and says so.
Each configuration runs in a fresh process (:mod:`benchmarks.probe`), so one
model's memory never pollutes another's figure.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int:
    """Resident set size now (0 where /proc is not available)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else 0


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak` (or since the start)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kB


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


@dataclass
class MemoryTrace:
    """RSS at the stages of one configuration, measured inside its own process."""

    start_bytes: int = 0  # python + numpy + edge_app
    after_import_bytes: int = 0  # + the runtime library (LiteRT, onnxruntime, torch)
    after_load_bytes: int = 0
    load_peak_bytes: int = 0  # peak while loading
    run_peak_bytes: int = 0  # peak over loading and running
    peak_reset: bool = False  # False: the peaks include everything since the process started

    def figures(self) -> dict[str, int | bool]:
        base = self.after_import_bytes
        return {
            "rss_runtime_import_bytes": max(0, self.after_import_bytes - self.start_bytes),
            "rss_load_bytes": max(0, self.after_load_bytes - base),
            "rss_load_peak_increase_bytes": max(0, self.load_peak_bytes - base),
            "rss_peak_increase_bytes": max(0, self.run_peak_bytes - base),
            "rss_peak_bytes": self.run_peak_bytes,
            "rss_peak_reset": self.peak_reset,
        }


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size
