"""A benchmark run: every model x format x threads x batch, checked up front, measured, recorded.

:func:`run_suite` is the Python API behind ``bench-device``. Bad input (a missing or
tampered artifact, an unknown format, a card of an unknown schema, a thread count
below 1, an empty data folder) is refused before anything is measured; a format
that fails while measuring is recorded as failed with its reason and the run goes on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cytoedge.edge_app.card import ModelCard, load_card
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.formats import FORMATS, get_format

_RUNTIME_MODULE = {"litert": None, "onnxruntime": "onnxruntime", "torch": "torch"}


@dataclass
class BenchOptions:
    models: list[Path]
    formats: list[str] | None = None  # None: every format the card has
    threads: list[int] | None = None  # None: the board profile's default
    batch: list[int] = field(default_factory=lambda: [1])
    data: Path | None = None  # labelled folder for accuracy
    max_images: int | None = None  # cap on --data images (evenly spread over the folder)
    frames: Path | None = None  # folder of frames for the end-to-end figure
    out: Path = Path("results")
    board: str | None = None  # profile name or .toml; None detects
    warmup: int = 10
    min_time: float = 2.0
    min_runs: int = 50
    timeout: float = 600.0
    peak: bool = True  # measure the board's int8 / fp32 compute peak (benchmarks.peak) for the roofline

    def check(self) -> None:
        if not self.models:
            raise CytoEdgeError("no model folder given: pass one or more folders written by edge-convert")
        for name, values in (("--threads", self.threads or [1]), ("--batch", self.batch)):
            bad = [v for v in values if v < 1]
            if bad or not values:
                raise CytoEdgeError(f"{name} must be whole numbers >= 1, got {bad or values}")
        if self.max_images is not None and self.max_images < 1:
            raise CytoEdgeError(f"--max-images must be >= 1, got {self.max_images}")
        if self.warmup < 0 or self.min_runs < 1 or self.min_time < 0 or self.timeout <= 0:
            raise CytoEdgeError("--warmup must be >= 0, --min-runs >= 1, --min-time >= 0 and --timeout > 0")
        if self.formats is not None:
            for f in self.formats:
                get_format(f)


def runtime_available(fmt: str) -> str:
    """``""`` if the library behind ``fmt`` is installed, else why not."""
    runtime = get_format(fmt).runtime
    module = _RUNTIME_MODULE[runtime]
    if module is None:
        from cytoedge.benchmarks.runtimes import tflite_interpreter_class

        try:
            tflite_interpreter_class()
        except CytoEdgeError as exc:
            return str(exc)
        return ""
    if not _installed(module):
        return f"{module} is not installed on this board (pip install {module})"
    return ""


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (torch takes seconds and hundreds of MB)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
        return False


@dataclass
class ModelPlan:
    name: str
    card: ModelCard
    formats: list[str]  # to measure, each verified
    skipped: dict[str, str]  # format -> why it is not measured


def model_name(path: Path, card: ModelCard) -> str:
    return path.resolve().name or card.architecture


def plan_models(opts: BenchOptions) -> list[ModelPlan]:
    """Load every card and verify every artifact to be measured (errors here stop the run)."""
    plans: list[ModelPlan] = []
    names: set[str] = set()
    for path in opts.models:
        card = load_card(path)
        wanted = opts.formats if opts.formats is not None else [f for f in FORMATS if f in card.artifacts]
        formats, skipped = [], {}
        for fmt in wanted:
            card.verify_artifact(fmt)  # missing from the card, missing file or wrong hash: one-line error
            why = runtime_available(fmt)
            if why:
                skipped[fmt] = why
            else:
                formats.append(fmt)
        name = model_name(Path(path), card)
        if name in names:
            name = f"{name}-{len(plans) + 1}"
        names.add(name)
        plans.append(ModelPlan(name, card, formats, skipped))
    return plans


def artifact_figures(card: ModelCard, fmt: str, torch_cost: dict[str, Any] | None) -> dict[str, Any]:
    """File size, hash and the graph's own cost (MACs, FLOPs, params) of one artifact."""
    from cytoedge.benchmarks import flops

    entry = card.artifact(fmt)
    path = card.artifact_path(fmt)
    out: dict[str, Any] = {"file": entry.file, "size_bytes": path.stat().st_size, "sha256": entry.sha256,
                           "cost": None, "cost_error": "", "activation": None}
    try:
        if fmt.startswith("tflite"):
            out["cost"] = flops.count_tflite(path).to_dict()
            out["activation"] = flops.tflite_activation_peak(path)
        elif fmt == "onnx":
            out["cost"] = flops.count_onnx(path).to_dict()
        elif fmt == "torch":
            out["cost"] = torch_cost if torch_cost and "macs" in torch_cost else None
            out["cost_error"] = "" if out["cost"] else (torch_cost or {}).get("error", "PyTorch is not installed")
    except CytoEdgeError as exc:
        out["cost_error"] = str(exc)
    if out["cost"] and torch_cost and torch_cost.get("macs"):
        out["crosscheck"] = {"torch_macs": torch_cost["macs"],
                             "relative_difference": out["cost"]["macs"] / torch_cost["macs"] - 1.0}
    return out


def torch_reference_cost(card: ModelCard) -> dict[str, Any] | None:
    """FlopCounterMode's count of the model rebuilt from its bundle, when torch and the bundle are here.

    A bundle that cannot be rebuilt leaves ``{"error": why}``: the cross-check is skipped, the run goes on.
    """
    if "torch" not in card.artifacts or not _installed("torch"):
        return None
    from cytoedge.benchmarks.flops import count_torch
    from cytoedge.train.bundle import read_bundle

    try:
        model = read_bundle(card.verify_artifact("torch").parent).load_model()
    except CytoEdgeError as exc:
        return {"error": str(exc)}
    return count_torch(model, card.preprocessing.size).to_dict()


def run_suite(opts: BenchOptions, progress: Callable[[str], None] = lambda s: None,
              warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure everything ``opts`` asks for; returns the result document (not yet written).

    ``warn`` (default: ``progress``) hears what must not pass unnoticed, e.g. a ``--board`` that is not this machine.
    """
    from cytoedge.benchmarks.board import board_info, thermal_snapshot, throttle_warning
    from cytoedge.benchmarks.results import RESULT_SCHEMA
    from cytoedge.benchmarks.runtimes import runtime_versions
    from cytoedge.edge_app.boards import board_check, resolve_board

    opts.check()
    profile = resolve_board(opts.board)
    checked = board_check(profile)
    if checked["warning"]:
        (warn or progress)(f"warning: {checked['warning']}")
    threads = opts.threads or [profile.threads]
    plans = plan_models(opts)  # every check that can refuse the run happens before anything is measured
    data = _load_data(opts, plans)
    frames = _frame_paths(opts.frames) if opts.frames else None

    created = datetime.now(timezone.utc).astimezone()
    before = thermal_snapshot(profile)
    peak = board_peak(threads, opts, progress) if opts.peak else None
    models, rows = [], []
    for plan in plans:
        entry, model_rows = measure_model(plan, opts, threads, data[plan.name] if data else None, frames, progress)
        models.append(entry)
        rows.extend(model_rows)
    add_roofline(models, rows, peak)
    after = thermal_snapshot(profile)
    return {
        "schema": RESULT_SCHEMA,
        "created": created.isoformat(timespec="seconds"),
        "board": board_info(profile),
        "board_check": checked,
        "environment": runtime_versions(),
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "models"},
                     "models": [str(m) for m in opts.models], "threads": threads,
                     "data_summary": next(iter(data.values())).summary if data else ""},
        "thermal": {"before": before, "after": after, "warning": throttle_warning(before, after)},
        "peak": peak,
        "models": models,
        "rows": rows,
    }


def board_peak(threads: list[int], opts: BenchOptions, progress: Callable[[str], None]) -> dict[str, Any]:
    """The board's int8 and fp32 peak (one large 1x1 convolution) at each thread count of the run."""
    from cytoedge.benchmarks.latency import LatencyOptions
    from cytoedge.benchmarks.peak import measure_peak

    progress(f"board peak: one 1x1 convolution, int8 and fp32, threads {','.join(map(str, threads))}")
    lat = LatencyOptions(warmup=min(opts.warmup, 5), min_time=min(opts.min_time, 1.0), min_runs=min(opts.min_runs, 20))
    peak = measure_peak(threads, lat)
    for dtype in ("int8", "fp32"):
        per = peak.get(dtype) or {}
        progress(f"board peak {dtype}: " + (per["error"] if "error" in per else
                                             ", ".join(f"{v['gmacs_per_s']:.0f} GMAC/s at {t} thr" for t, v in per.items())))
    return peak


def add_roofline(models: list[dict[str, Any]], rows: list[dict[str, Any]], peak: dict[str, Any] | None) -> None:
    """Each measured row gets ``roofline``: its achieved GMAC/s and the fraction of the board's peak."""
    from cytoedge.benchmarks.peak import roofline

    macs = {(m["name"], fmt): (a.get("cost") or {}).get("macs") for m in models for fmt, a in m["artifacts"].items()}
    for r in rows:
        if r["status"] == "ok":
            r["roofline"] = roofline(r, macs.get((r["model"], r["format"])), peak)


def measure_model(plan: ModelPlan, opts: BenchOptions, threads: list[int], data: Any, frames: list[Path] | None,
                  progress: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One model: its artifacts' cost, a fresh-process probe per format x threads x batch, accuracy, frames."""
    from cytoedge.benchmarks.probe import ProbeConfig, ProbeResult, run_probe

    card = plan.card
    progress(f"{plan.name}: counting {', '.join(plan.formats) or 'nothing'}")
    torch_cost = torch_reference_cost(card)
    artifacts = {fmt: artifact_figures(card, fmt, torch_cost) for fmt in plan.formats}
    rows = []
    for fmt in plan.formats:
        max_batch = card.artifact(fmt).max_batch
        for t in threads:
            for b in opts.batch:
                if b > max_batch:
                    res = ProbeResult("skipped", f"its model card says it takes at most {max_batch} image(s) per "
                                                 "invocation (convert with a dynamic batch to measure more)")
                else:
                    res = run_probe(ProbeConfig(str(card.directory), fmt, t, b, opts.warmup, opts.min_time,
                                                opts.min_runs, timeout_s=opts.timeout))
                rows.append({"model": plan.name, "architecture": card.architecture, "format": fmt, "threads": t,
                             "batch": b, "status": res.status, "reason": res.reason, **res.figures})
                progress(_row_line(rows[-1]))
    fastest = fastest_threads(rows, plan, threads)
    rows += [{"model": plan.name, "architecture": card.architecture, "format": fmt, "threads": None, "batch": None,
              "status": "skipped", "reason": why} for fmt, why in plan.skipped.items()]
    entry: dict[str, Any] = {"name": plan.name, "dir": str(card.directory), "architecture": card.architecture,
                             "class_names": card.class_names, "input_size": card.preprocessing.size,
                             "card_created": card.created, "torch_cost": torch_cost, "artifacts": artifacts,
                             "skipped": plan.skipped}
    if data is not None:
        from cytoedge.benchmarks.accuracy import evaluate

        progress(f"{plan.name}: accuracy on {len(data.paths)} images")
        entry["accuracy"] = evaluate(card, plan.formats, data, threads=fastest)
    if frames is not None:
        from cytoedge.benchmarks.endtoend import run_frames

        progress(f"{plan.name}: end to end on {len(frames)} frames")
        entry["end_to_end"] = run_frames(card, plan.formats, frames, threads=fastest)
    return entry, rows


def fastest_threads(rows: list[dict[str, Any]], plan: ModelPlan, threads: list[int]) -> dict[str, int]:
    """Per format of ``plan``: the thread count with the lowest median latency (the most threads if none ran)."""
    best: dict[str, tuple[float, int]] = {}
    for r in rows:
        if r["model"] == plan.name and r["status"] == "ok":
            p50 = r["latency"]["p50_ms"] / r["batch"]
            if r["format"] not in best or p50 < best[r["format"]][0]:
                best[r["format"]] = (p50, r["threads"])
    return {fmt: best[fmt][1] if fmt in best else max(threads) for fmt in plan.formats}


def _load_data(opts: BenchOptions, plans: list[ModelPlan]) -> dict[str, Any] | None:
    if opts.data is None:
        return None
    from cytoedge.benchmarks.accuracy import load_labelled

    cache: dict[tuple[str, ...], Any] = {}
    out = {}
    for plan in plans:
        key = tuple(plan.card.class_names)
        if key not in cache:
            cache[key] = load_labelled(opts.data, key, opts.max_images)
        out[plan.name] = cache[key]
    return out


def _frame_paths(folder: Path) -> list[Path]:
    from cytoedge.train.data.sipakmed import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise CytoEdgeError(f"--frames {folder} is not a folder: pass a folder of frame images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CytoEdgeError(f"--frames {folder} holds no images (.png, .jpg, .bmp, .tif)")
    return paths


def _row_line(row: dict[str, Any]) -> str:
    head = f"{row['model']} {row['format']} threads={row['threads']} batch={row['batch']}"
    if row["status"] != "ok":
        return f"{head}: {row['status']} ({row['reason']})"
    lat = row["latency"]
    return f"{head}: p50 {lat['p50_ms']:.2f} ms, {lat['throughput_ips']:.1f} img/s"
