"""``bench-device report``: result files of several boards -> one Markdown and one self-contained HTML report.

Per board the newest figure of each configuration wins when runs overlap. The report
holds: the boards and their environment (throttling warnings included); a view
shaped like Table 3 of Chen et al. 2022 (params, memory, FLOPs, accuracy) with the
latency of the fastest thread count at batch 1; each board's roofline (its measured
int8 / fp32 peak and every model's share of it); accuracy and latency per input size
where one architecture was converted at several sizes, with the Pareto front; plots of latency vs FLOPs, accuracy
vs latency with each board's Pareto front, and memory per model; and every
configuration's figures. The Markdown links its PNGs from ``<stem>_files/``; the HTML
carries the same images inline (base64), so it is one file to mail or archive.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cytoedge.benchmarks.board import isa_summary
from cytoedge.benchmarks.results import load_results
from cytoedge.benchmarks.table import COST_COLUMNS, SPEED_COLUMNS, cost_rows, per_class_rows, speed_rows
from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_text
from cytoedge.edge_app.errors import CytoEdgeError

MB = 1 << 20
TABLE3_COLUMNS = ("model", "format", "params M", "file MB", "RSS +MB", "GFLOPs", "acc %", "p50 ms", "thr")


@dataclass
class BoardView:
    """Everything measured on one board, merged over its result files (newest wins)."""

    slug: str
    board: dict[str, Any]
    files: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    board_warnings: list[str] = field(default_factory=list)  # --board named another board than the one detected
    peak: dict[str, Any] = field(default_factory=dict)  # the newest compute peak measured (benchmarks.peak)

    def doc(self) -> dict[str, Any]:
        """The merged view in the shape of one result document (for :mod:`benchmarks.table`)."""
        return {"board": self.board, "models": list(self.models.values()), "rows": list(self.rows.values())}


def merge(docs: Iterable[dict[str, Any]]) -> list[BoardView]:
    views: dict[str, BoardView] = {}
    for doc in docs:  # oldest first, so newer figures overwrite older ones
        slug = doc["board"]["slug"]
        view = views.setdefault(slug, BoardView(slug, doc["board"]))
        view.board = doc["board"]
        view.files.append(doc.get("_file", ""))
        view.environment = doc.get("environment", {})
        if doc.get("peak"):
            view.peak = doc["peak"]
        for m in doc.get("models", []):
            old = view.models.get(m["name"], {})
            merged = {**old, **m, "artifacts": {**old.get("artifacts", {}), **m.get("artifacts", {})},
                      "accuracy": {**(old.get("accuracy") or {}), **(m.get("accuracy") or {})}}
            view.models[m["name"]] = merged
        for r in doc.get("rows", []):
            view.rows[(r["model"], r["format"], r.get("threads"), r.get("batch"))] = r
        warning = doc.get("thermal", {}).get("warning")
        if warning:
            view.warnings.append(f"{doc.get('created', '')}: {warning}")
        mismatch = doc.get("board_check", {}).get("warning")
        if mismatch:
            view.board_warnings.append(f"{doc.get('created', '')}: {mismatch}")
    return list(views.values())


def best_rows(view: BoardView, batch: int = 1) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, format): the row with the lowest p50 at ``batch`` (the fastest thread count)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in view.rows.values():
        if r["status"] != "ok" or r.get("batch") != batch:
            continue
        key = (r["model"], r["format"])
        if key not in best or r["latency"]["p50_ms"] < best[key]["latency"]["p50_ms"]:
            best[key] = r
    return best


def _cost(view: BoardView, model: str, fmt: str) -> dict[str, Any]:
    return ((view.models.get(model) or {}).get("artifacts", {}).get(fmt) or {}).get("cost") or {}


def _accuracy(view: BoardView, model: str, fmt: str) -> float | None:
    acc = ((view.models.get(model) or {}).get("accuracy") or {}).get(fmt) or {}
    return acc.get("accuracy") if acc.get("status") == "ok" else None


def table3_rows(view: BoardView) -> list[dict[str, str]]:
    best = best_rows(view)
    rows = []
    for name, m in view.models.items():
        for fmt, art in m.get("artifacts", {}).items():
            cost, row, acc = art.get("cost") or {}, best.get((name, fmt)), _accuracy(view, name, fmt)
            rows.append({
                "model": name, "format": fmt,
                "params M": f"{cost['params'] / 1e6:.2f}" if cost.get("params") else "",
                "file MB": f"{art['size_bytes'] / MB:.2f}",
                "RSS +MB": f"{row['memory']['rss_peak_increase_bytes'] / MB:.1f}" if row else "",
                "GFLOPs": f"{cost['flops'] / 1e9:.3f}" if cost else "",
                "acc %": f"{acc * 100:.1f}" if acc is not None else "",
                "p50 ms": f"{row['latency']['p50_ms']:.2f}" if row else "",
                "thr": str(row["threads"]) if row else "",
            })
    return rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and accuracy (higher), by latency.

    >>> pareto_front([(1.0, 0.8), (2.0, 0.7), (3.0, 0.9), (0.5, 0.6)])
    [(0.5, 0.6), (1.0, 0.8), (3.0, 0.9)]
    """
    front: list[tuple[float, float]] = []
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((lat, acc))
    return front


ROOFLINE_COLUMNS = ("model", "format", "thr", "GMACs", "p50 ms", "GMAC/s", "peak GMAC/s", "% of peak")
PEAK_COLUMNS = ("precision", "thr", "p50 ms", "GMAC/s (p50)", "GMAC/s (fastest run)")


def peak_rows(view: BoardView) -> list[dict[str, str]]:
    rows = []
    for dtype in ("int8", "fp32"):
        per = view.peak.get(dtype) or {}
        if "error" in per:
            rows.append({"precision": dtype, "thr": "", "p50 ms": per["error"]})
            continue
        for t, v in per.items():
            rows.append({"precision": dtype, "thr": t, "p50 ms": f"{v['p50_ms']:.3f}",
                         "GMAC/s (p50)": f"{v['gmacs_per_s']:.1f}", "GMAC/s (fastest run)": f"{v['best_gmacs_per_s']:.1f}"})
    return rows


def roofline_rows(view: BoardView) -> list[dict[str, str]]:
    """Every batch-1 row with a roofline figure, by model, format and threads."""
    from cytoedge.benchmarks.peak import roofline

    rows = []
    for key in sorted(view.rows, key=lambda k: (str(k[0]), str(k[1]), k[2] or 0, k[3] or 0)):
        r = view.rows[key]
        if r["status"] != "ok" or r.get("batch") != 1:
            continue
        cost = _cost(view, r["model"], r["format"])
        roof = roofline(r, cost.get("macs"), view.peak) or {}
        if not roof:
            continue
        frac, top = roof.get("fraction_of_peak"), roof.get("peak_gmacs_per_s")
        rows.append({"model": r["model"], "format": r["format"], "thr": str(r["threads"]),
                     "GMACs": f"{cost['macs'] / 1e9:.3f}", "p50 ms": f"{r['latency']['p50_ms']:.2f}",
                     "GMAC/s": f"{roof['gmacs_per_s']:.1f}", "peak GMAC/s": f"{top:.0f}" if top else "",
                     "% of peak": f"{frac * 100:.1f}" if frac is not None else ""})
    return rows


SIZE_COLUMNS = ("architecture", "input px", "model", "format", "GMACs", "p50 ms", "acc %", "Pareto")


def input_size_rows(view: BoardView) -> list[dict[str, str]]:
    """Architectures measured at several input sizes: accuracy and latency per size, and which sizes are on the
    Pareto front (no other size of that architecture and format is both faster and more accurate)."""
    best = best_rows(view)
    groups: dict[tuple[str, str], list[tuple[int, str, dict[str, Any], float | None]]] = {}
    for name, m in view.models.items():
        for fmt in m.get("artifacts", {}):
            if (name, fmt) in best:
                groups.setdefault((m.get("architecture", ""), fmt), []).append(
                    (int(m.get("input_size") or 0), name, best[(name, fmt)], _accuracy(view, name, fmt)))
    rows = []
    for (arch, fmt), items in sorted(groups.items()):
        if len({i[0] for i in items}) < 2:
            continue
        front = pareto_front([(r["latency"]["p50_ms"], acc) for _, _, r, acc in items if acc is not None])
        for size, name, r, acc in sorted(items):
            cost = _cost(view, name, fmt)
            rows.append({"architecture": arch, "input px": str(size), "model": name, "format": fmt,
                         "GMACs": f"{cost['macs'] / 1e9:.3f}" if cost else "",
                         "p50 ms": f"{r['latency']['p50_ms']:.2f}", "acc %": f"{acc * 100:.1f}" if acc is not None else "",
                         "Pareto": "yes" if acc is not None and (r["latency"]["p50_ms"], acc) in front else ""})
    return rows


# -- plots ----------------------------------------------------------------------------------

def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise CytoEdgeError("bench-device report draws its plots with matplotlib, which is not installed: "
                            "pip install matplotlib (or run the report on another machine)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


_COLOURS = {"tflite-int8": "tab:blue", "tflite-fp32": "tab:orange", "onnx": "tab:green", "torch": "tab:red"}
_BOARD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LATENCY_LABEL = "p50 latency, ms (batch 1, fastest thread count)"
Point = tuple[float, float, str, str]  # x, y, model, format


def _scatter(ax: Any, views: list[BoardView],
             point: Callable[[BoardView, str, str, dict[str, Any]], tuple[float, float] | None]) -> list[list[Point]]:
    """Colour per format, marker per board, log x axis with plain tick labels; returns each board's points."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    per_board = []
    for i, view in enumerate(views):
        pts = []
        for (model, fmt), row in sorted(best_rows(view).items()):
            xy = point(view, model, fmt, row)
            if xy is not None:
                pts.append((*xy, model, fmt))
                ax.scatter(*xy, marker=_BOARD_MARKERS[i % len(_BOARD_MARKERS)], color=_COLOURS.get(fmt, "grey"),
                           s=45, alpha=0.85)
        per_board.append(pts)
    fmts = sorted({p[3] for pts in per_board for p in pts}, key=lambda f: list(_COLOURS).index(f) if f in _COLOURS else 9)
    handles = [Line2D([], [], color=_COLOURS.get(f, "grey"), marker="o", ls="", label=f) for f in fmts]
    handles += [Line2D([], [], color="black", marker=_BOARD_MARKERS[i % len(_BOARD_MARKERS)], ls="",
                       label=v.board["title"]) for i, v in enumerate(views)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.tick_params(which="minor", labelsize=6)
    ax.grid(True, which="both", alpha=0.2)
    return per_board


def _annotate(ax: Any, pts: list[Point], text: Callable[[Point], str]) -> None:
    for p in pts:
        ax.annotate(text(p), (p[0], p[1]), fontsize=6, xytext=(4, 2), textcoords="offset points")


def plot_latency_vs_flops(views: list[BoardView]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))

    def point(view: BoardView, model: str, fmt: str, row: dict[str, Any]) -> tuple[float, float] | None:
        cost = _cost(view, model, fmt)
        return (cost["flops"] / 1e9, row["latency"]["p50_ms"]) if cost else None

    ax.set_yscale("log")
    for pts in _scatter(ax, views, point):
        fastest: dict[str, Point] = {}
        for p in pts:  # each model named once per board, beside its fastest format
            if p[2] not in fastest or p[1] < fastest[p[2]][1]:
                fastest[p[2]] = p
        _annotate(ax, list(fastest.values()), lambda p: p[2])
    ax.set_xlabel("GFLOPs per image (FLOPs = 2 x MACs, from the artifact's graph)")
    ax.set_ylabel(_LATENCY_LABEL)
    ax.set_title("Latency vs FLOPs")
    return _png(fig)


def plot_accuracy_vs_latency(views: list[BoardView]) -> bytes | None:
    """None when no result has accuracy figures (bench-device ran without --data)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))

    def point(view: BoardView, model: str, fmt: str, row: dict[str, Any]) -> tuple[float, float] | None:
        acc = _accuracy(view, model, fmt)
        return None if acc is None else (row["latency"]["p50_ms"], acc * 100)

    per_board = _scatter(ax, views, point)
    if not any(per_board):
        plt.close(fig)
        return None
    styles = ("-", "--", ":", "-.")
    for i, pts in enumerate(per_board):
        front = pareto_front([(p[0], p[1]) for p in pts])
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", alpha=0.5, lw=1.2,
                    ls=styles[i % len(styles)])
            _annotate(ax, [p for p in pts if (p[0], p[1]) in front], lambda p: f"{p[2]} {p[3]}")
    ax.yaxis.set_minor_formatter(lambda v, _: "")
    ax.set_xlabel(_LATENCY_LABEL)
    ax.set_ylabel("accuracy, % (--data)")
    ax.set_title("Accuracy vs latency (steps: Pareto front per board, its points named)")
    return _png(fig)


def plot_memory(views: list[BoardView]) -> bytes:
    plt = _pyplot()
    import numpy as np

    fig, axes = plt.subplots(len(views), 1, figsize=(8, 3.6 * len(views)), squeeze=False)
    for ax, view in zip(axes[:, 0], views):
        best = best_rows(view)
        models = list(view.models)
        formats = [f for f in _COLOURS if any(f in m.get("artifacts", {}) for m in view.models.values())]
        width = 0.8 / max(1, len(formats))
        x = np.arange(len(models))
        for j, fmt in enumerate(formats):
            rss = [best[(m, fmt)]["memory"]["rss_peak_increase_bytes"] / MB if (m, fmt) in best else 0 for m in models]
            size = [view.models[m]["artifacts"].get(fmt, {}).get("size_bytes", 0) / MB for m in models]
            ax.bar(x + j * width, rss, width, label=f"{fmt}: peak RSS increase", color=_COLOURS[fmt])
            ax.scatter(x + j * width, size, marker="_", s=200, color="black", zorder=3,
                       label="file size" if j == 0 else None)
        ax.set_xticks(x + width * (len(formats) - 1) / 2, models, fontsize=8)
        ax.set_ylabel("MB")
        ax.set_title(f"Memory per model - {view.board['title']} (bars: peak RSS increase of load + run; "
                     "black ticks: file size)", fontsize=9)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


# -- text -------------------------------------------------------------------------------------

def _md_table(columns: Sequence[str], rows: list[dict[str, str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(columns: Sequence[str], rows: list[dict[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _board_rows(views: list[BoardView]) -> list[dict[str, str]]:
    rows = []
    for v in views:
        b, env = v.board, v.environment
        runtimes = ", ".join(f"{k} {env[k]}" for k in ("ai-edge-litert", "tflite-runtime", "onnxruntime", "torch")
                             if k in env)
        rows.append({"board": v.slug, "title": b["title"], "CPU": b.get("cpu_model", ""),
                     "ISA features": isa_summary(b.get("isa", {})), "cores": str(b.get("cores", "")),
                     "RAM GB": f"{b.get('ram_bytes', 0) / (1 << 30):.1f}", "OS": b.get("os", ""),
                     "Python": b.get("python", ""), "runtimes": runtimes, "runs": str(len(v.files)),
                     "throttled": "yes" if v.warnings else "no"})
    return rows


BOARD_COLUMNS = ("board", "title", "CPU", "ISA features", "cores", "RAM GB", "OS", "Python", "runtimes", "runs",
                 "throttled")


def _sections(views: list[BoardView], images: dict[str, bytes | None]) -> list[tuple[str, str, Any]]:
    """``(kind, title or text, payload)`` blocks that both writers render."""
    blocks: list[tuple[str, str, Any]] = [
        ("h1", "bench-device report", None),
        ("p", f"Generated {datetime.now().astimezone().isoformat(timespec='seconds')} from "
              f"{sum(len(v.files) for v in views)} result file(s) of {len(views)} board(s). MACs and FLOPs are per "
              "image, counted from each artifact's own graph (convolutions and matrix products; FLOPs = 2 x MACs). "
              "Latency is per invocation of one batch; p50 is the median of all timed runs, outliers (outside "
              "Tukey's fences) are counted, not dropped. RSS +MB is the peak resident-memory increase of loading "
              "and running the model, measured in a fresh process.", None),
        ("h2", "Boards", None),
        ("table", "", (BOARD_COLUMNS, _board_rows(views))),
    ]
    for v in views:
        if v.board.get("emulated"):
            blocks.append(("warn", f"{v.board['title']}: measured under an emulator ({v.board['emulated']}); its "
                                   "timings are not board timings, only its costs and accuracy carry over", None))
        for w in v.board_warnings + v.warnings:
            blocks.append(("warn", f"{v.board['title']}: {w}", None))
    for v in views:
        blocks += [("h2", f"Table 3 view - {v.board['title']}", None),
                   ("p", "Shaped like Table 3 of Chen et al. 2022 (params, memory, FLOPs, accuracy); latency and "
                         "memory of the fastest thread count at batch 1.", None),
                   ("table", "", (TABLE3_COLUMNS, table3_rows(v)))]
    for v in views:
        if not v.peak:
            continue
        blocks += [("h2", f"Roofline - {v.board['title']}", None),
                   ("p", "The board's compute roof: one large 1x1 convolution (" +
                         "x".join(map(str, v.peak.get("shape", []))) + " -> a matrix product XNNPACK runs at its best) "
                         "timed like the models, int8 and fp32, per thread count; then each model's achieved MACs per "
                         "second (MACs per image / p50 latency at batch 1) as a share of the peak of its precision "
                         "at the same thread count. Only the compute roof is measured (no memory-bandwidth roof).",
                    None),
                   ("table", "", (PEAK_COLUMNS, peak_rows(v))),
                   ("table", "", (ROOFLINE_COLUMNS, roofline_rows(v)))]
    for v in views:
        sizes = input_size_rows(v)
        if sizes:
            blocks += [("h2", f"Input size - {v.board['title']}", None),
                       ("p", "One architecture converted at several input sizes: accuracy (--data) and latency of the "
                             "fastest thread count at batch 1. Pareto: no other size of that architecture and format is "
                             "both faster and more accurate.", None),
                       ("table", "", (SIZE_COLUMNS, sizes))]
    blocks.append(("h2", "Plots", None))
    captions = {"latency_vs_flops": "Latency vs FLOPs", "accuracy_vs_latency": "Accuracy vs latency (Pareto front per board)",
                "memory": "Memory per model"}
    for key, caption in captions.items():
        if images.get(key):
            blocks.append(("img", caption, key))
        else:
            blocks.append(("p", f"{caption}: no accuracy figures in these results (run bench-device with --data).", None))
    for v in views:
        doc = v.doc()
        speed, notes = speed_rows(doc)
        blocks += [("h2", f"All figures - {v.board['title']}", None),
                   ("h3", "Cost per artifact", None), ("table", "", (COST_COLUMNS, cost_rows(doc))),
                   ("h3", "Recall / precision per class, %", None), ("table", "", per_class_rows(doc)),
                   ("h3", "Speed per configuration", None), ("table", "", (SPEED_COLUMNS, speed))]
        blocks += [("note", n, None) for n in notes]
        blocks.append(("p", "Result files: " + ", ".join(f for f in v.files if f), None))
    return blocks


def render_markdown(blocks: list[tuple[str, str, Any]], image_dir: str) -> str:
    out = []
    for kind, text, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + text)
        elif kind == "table":
            out.append(_md_table(*payload))
        elif kind == "img":
            out.append(f"![{text}]({image_dir}/{payload}.png)")
        elif kind == "warn":
            out.append(f"> **Warning:** {text}")
        elif kind == "note":
            out.append(f"- {text}")
        else:
            out.append(text)
    return "\n\n".join(out) + "\n"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
        "font-size:0.85em;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,td:nth-child(2),th{text-align:left}.warn{background:#fff3cd;padding:0.5em}"
        "img{max-width:100%}")


def render_html(blocks: list[tuple[str, str, Any]], images: dict[str, bytes | None]) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>bench-device report</title>"
           f"<style>{_CSS}</style></head><body>"]
    for kind, text, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(text)}</{kind}>")
        elif kind == "table":
            out.append(_html_table(*payload))
        elif kind == "img":
            data = base64.b64encode(images[payload] or b"").decode("ascii")
            out.append(f"<figure><img alt='{html.escape(text)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(text)}</figcaption></figure>")
        elif kind == "warn":
            out.append(f"<p class='warn'><b>Warning:</b> {html.escape(text)}</p>")
        elif kind == "note":
            out.append(f"<p><small>{html.escape(text)}</small></p>")
        else:
            out.append(f"<p>{html.escape(text)}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def build_report(results: Sequence[str | Path], output: str | Path = "report.md") -> tuple[Path, Path]:
    """Write ``output`` (Markdown, PNGs in ``<stem>_files/``) and ``<stem>.html``; returns both paths."""
    output = Path(output)
    if output.suffix.lower() != ".md":
        raise CytoEdgeError(f"-o {output}: give the Markdown file to write, e.g. -o report.md (the HTML goes beside it)")
    views = merge(load_results(results))
    images: dict[str, bytes | None] = {
        "latency_vs_flops": plot_latency_vs_flops(views),
        "accuracy_vs_latency": plot_accuracy_vs_latency(views),
        "memory": plot_memory(views),
    }
    blocks = _sections(views, images)
    image_dir = output.parent / f"{output.stem}_files"
    for key, data in images.items():
        if data:
            atomic_write_bytes(image_dir / f"{key}.png", data)
    md = atomic_write_text(output, render_markdown(blocks, image_dir.name))
    page = atomic_write_text(output.with_suffix(".html"), render_html(blocks, images))
    return md, page
