"""One configuration (model x format x threads x batch) measured in a fresh process.

``python -m cytoedge.benchmarks.probe CONFIG.json RESULT.json``: import the runtime, load the
artifact, time the first inference, then the warm latency, and trace the RSS at each
stage. :func:`run_probe` starts that process from the parent and turns a crash, a
timeout or an error inside into a failed row with its reason, so the other
configurations still run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.errors import CytoEdgeError


@dataclass(frozen=True)
class ProbeConfig:
    model_dir: str
    format: str
    threads: int
    batch: int
    warmup: int = 10
    min_time: float = 2.0
    min_runs: int = 50
    seed: int = 0
    timeout_s: float = 600.0  # the parent kills the probe after this


@dataclass
class ProbeResult:
    status: str  # "ok", "failed" or "skipped"
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def _measure(cfg: ProbeConfig) -> dict[str, Any]:
    """Inside the fresh process: everything about one configuration."""
    from cytoedge.benchmarks.latency import LatencyOptions, measure
    from cytoedge.benchmarks.memory import MemoryTrace, peak_rss_bytes, reset_peak, rss_bytes
    from cytoedge.benchmarks.runtimes import import_runtime, load_runner, random_input
    from cytoedge.edge_app.card import load_card

    mem = MemoryTrace(start_bytes=rss_bytes())
    card = load_card(cfg.model_dir)
    t0 = time.perf_counter()
    import_runtime(cfg.format)
    import_s = time.perf_counter() - t0
    x = random_input(card, cfg.format, cfg.batch, cfg.seed)
    mem.after_import_bytes = rss_bytes()
    mem.peak_reset = reset_peak()

    t0 = time.perf_counter()
    runner = load_runner(card, cfg.format, threads=cfg.threads, batch=cfg.batch, verify=False)
    t1 = time.perf_counter()
    mem.after_load_bytes, mem.load_peak_bytes = rss_bytes(), peak_rss_bytes()
    logits, emb = runner.run(x)
    t2 = time.perf_counter()
    stats = measure(lambda: runner.run(x), LatencyOptions(cfg.warmup, cfg.min_time, cfg.min_runs), cfg.batch)
    mem.run_peak_bytes = peak_rss_bytes()
    if logits.shape[0] != cfg.batch or emb.shape[0] != cfg.batch:
        raise CytoEdgeError(f"the artifact returned {logits.shape[0]} results for a batch of {cfg.batch}")
    return {
        "runtime_import_s": import_s,
        "load_ms": (t1 - t0) * 1e3,
        "first_inference_ms": (t2 - t1) * 1e3,
        "time_to_first_inference_ms": (t2 - t0) * 1e3,  # load + first invoke
        "latency": stats.to_dict(),
        "memory": mem.figures(),
        "output_shapes": {"logits": list(logits.shape), "embedding": list(emb.shape)},
    }


def _child(config_path: str, result_path: str) -> int:
    from cytoedge.benchmarks.runtimes import RuntimeUnavailableError

    cfg = ProbeConfig(**json.loads(Path(config_path).read_text(encoding="utf-8")))
    try:
        out = asdict(ProbeResult("ok", figures=_measure(cfg)))
    except CytoEdgeError as exc:
        status = "skipped" if isinstance(exc, RuntimeUnavailableError) else "failed"
        out = asdict(ProbeResult(status, " ".join(str(exc).split())))
    except Exception as exc:  # noqa: BLE001 - a runtime failing on this artifact is a result, not a crash
        first = (str(exc).strip().splitlines() or [""])[0]
        out = asdict(ProbeResult("failed", f"{type(exc).__name__}: {first}"[:500]))
    atomic_write_json(result_path, out)
    return 0


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_probe(cfg: ProbeConfig) -> ProbeResult:
    """Measure ``cfg`` in a fresh Python process; never raises for a failure of the model or runtime."""
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        cpath, rpath = Path(tmp, "config.json"), Path(tmp, "result.json")
        cpath.write_text(json.dumps(asdict(cfg)), encoding="utf-8")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        try:
            done = subprocess.run([sys.executable, "-m", "cytoedge.benchmarks.probe", str(cpath), str(rpath)],
                                  capture_output=True, text=True, timeout=cfg.timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired:
            return ProbeResult("failed", f"timed out after {cfg.timeout_s:.0f} s (raise --timeout for slow boards)")
        if rpath.is_file():
            d = json.loads(rpath.read_text(encoding="utf-8"))
            return ProbeResult(d["status"], d.get("reason", ""), d.get("figures", {}))
        why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        detail = _last_line(done.stderr)
        return ProbeResult("failed", f"the measuring process died ({why}){': ' + detail if detail else ''}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m cytoedge.benchmarks.probe CONFIG.json RESULT.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1], sys.argv[2]))
