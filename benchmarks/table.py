"""The run's two tables as text cells: what each artifact costs, and how fast each configuration runs.

* cost: one row per model x format - MACs and FLOPs (= 2 x MACs) per image, params,
  file size, activation estimate, accuracy, the abnormal group's sensitivity and
  specificity, and agreement with the fp32 reference (per-class recall / precision beside it);
* speed: one row per model x format x threads x batch - time to first inference,
  latency statistics per invocation, throughput, achieved GMAC/s and its share of the
  board's peak at the same thread count (:mod:`benchmarks.peak`), outliers, peak RSS increase.

Failed and skipped configurations get a numbered note with their reason. The
terminal (rich) and the report (Markdown, HTML) print the same cells.
"""

from __future__ import annotations

from typing import Any

from cytoedge.benchmarks.board import isa_summary

MB = 1 << 20
COST_COLUMNS = ("model", "format", "GMACs", "GFLOPs", "params M", "file MB", "act. MB", "acc %", "F1 %",
                "abn sens %", "abn spec %", "agree %")
SPEED_COLUMNS = ("model", "format", "thr", "batch", "first ms", "mean ms", "sd", "p50", "p90", "p99", "img/s",
                 "GMAC/s", "% peak", "outliers", "RSS +MB", "status")
RIGHT = {"model", "format", "status"}  # left-aligned columns; the rest are numbers


def _f(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _pct(value: Any) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def cost_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for m in doc.get("models", []):
        for fmt, art in m.get("artifacts", {}).items():
            cost, act = art.get("cost") or {}, art.get("activation") or {}
            acc = (m.get("accuracy") or {}).get(fmt) or {}
            ok = acc.get("status") == "ok"
            rows.append({
                "model": m["name"], "format": fmt,
                "GMACs": _f(cost["macs"] / 1e9 if cost else None, ".3f"),
                "GFLOPs": _f(cost["flops"] / 1e9 if cost else None, ".3f"),
                "params M": _f(cost["params"] / 1e6 if cost.get("params") else None, ".3f"),
                "file MB": _f(art["size_bytes"] / MB, ".2f"),
                "act. MB": _f(act["activation_peak_bytes"] / MB if act else None, ".2f"),
                "acc %": _pct(acc.get("accuracy")) if ok else ("failed" if acc else ""),
                "F1 %": _pct(acc.get("macro_f1")) if ok else "",
                "abn sens %": _pct((acc.get("abnormal") or {}).get("sensitivity")) if ok else "",
                "abn spec %": _pct((acc.get("abnormal") or {}).get("specificity")) if ok else "",
                "agree %": _pct(acc.get("agreement")) if ok else "",
            })
    return rows


def per_class_rows(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """One row per model x format with accuracy figures: "recall / precision" (%) per class."""
    classes: list[str] = []
    rows = []
    for m in doc.get("models", []):
        for fmt, acc in (m.get("accuracy") or {}).items():
            if acc.get("status") != "ok" or not acc.get("per_class"):
                continue
            classes += [c for c in acc["per_class"] if c not in classes]
            rows.append({"model": m["name"], "format": fmt,
                         **{c: f"{_pct(v['recall'])} / {_pct(v['precision'])}" for c, v in acc["per_class"].items()}})
    return ("model", "format", *classes), [{c: r.get(c, "") for c in ("model", "format", *classes)} for r in rows]


def speed_rows(doc: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """The speed table and the numbered notes of its failed or skipped rows."""
    rows, notes = [], []
    for r in doc.get("rows", []):
        lat, mem = r.get("latency") or {}, r.get("memory") or {}
        status = r["status"]
        if status != "ok":
            where = "" if r.get("threads") is None else f" threads={r['threads']} batch={r['batch']}"
            notes.append(f"[{len(notes) + 1}] {r['model']} {r['format']}{where}: {status}: {r.get('reason', '')}")
            status = f"{status} [{len(notes)}]"
        rows.append({
            "model": r["model"], "format": r["format"],
            "thr": _f(r.get("threads"), "d"), "batch": _f(r.get("batch"), "d"),
            "first ms": _f(r.get("time_to_first_inference_ms"), ".1f"),
            "mean ms": _f(lat.get("mean_ms"), ".2f"), "sd": _f(lat.get("std_ms"), ".2f"),
            "p50": _f(lat.get("p50_ms"), ".2f"), "p90": _f(lat.get("p90_ms"), ".2f"), "p99": _f(lat.get("p99_ms"), ".2f"),
            "img/s": _f(lat.get("throughput_ips"), ".1f"),
            "GMAC/s": _f((r.get("roofline") or {}).get("gmacs_per_s"), ".1f"),
            "% peak": _pct((r.get("roofline") or {}).get("fraction_of_peak")),
            "outliers": f"{lat['outliers']}/{lat['runs']}" if lat else "",
            "RSS +MB": _f(mem["rss_peak_increase_bytes"] / MB if mem else None, ".1f"),
            "status": status,
        })
    return rows, notes


def _print_rich(title: str, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        for line in [columns, *([r[c] for c in columns] for r in rows)]:
            print("  ".join(line))
        return
    table = Table(title=title, title_justify="left", pad_edge=False)
    for c in columns:
        table.add_column(c, justify="left" if c in RIGHT else "right", no_wrap=c not in ("status",))
    for r in rows:
        table.add_row(*(r[c] for c in columns), style=None if r.get("status", "ok") == "ok" else "yellow")
    console = Console()
    if not console.is_terminal:  # a pipe or a file: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


def print_table(doc: dict[str, Any]) -> None:
    """The run's tables on the terminal (rich when installed, plain columns otherwise)."""
    board = doc["board"]
    _print_rich(f"Cost per artifact (per image; FLOPs = 2 x MACs; abnormal = koilocytotic + dyskeratotic vs the "
                f"rest) - {board['title']}", COST_COLUMNS, cost_rows(doc))
    pc_cols, pc_rows = per_class_rows(doc)
    if pc_rows:
        _print_rich(f"Recall / precision per class, % - {board['title']}", pc_cols, pc_rows)
    rows, notes = speed_rows(doc)
    _print_rich(f"Speed per configuration (ms per invocation of one batch) - {board['title']}, "
                f"{board['cores']} cores", SPEED_COLUMNS, rows)
    for n in notes:
        print(n)
    print(f"CPU: {board.get('cpu_model') or board.get('machine', '')}; ISA features: {isa_summary(board.get('isa', {}))}")
    if board.get("emulated"):
        print(f"note: run under an emulator ({board['emulated']}): these timings are not board timings")
    peak = doc.get("peak") or {}
    for dtype in ("int8", "fp32"):
        per = peak.get(dtype) or {}
        if per:
            print(f"board peak {dtype} (1x1 conv {'x'.join(map(str, peak.get('shape', [])))}): " +
                  (per["error"] if "error" in per else
                   ", ".join(f"{v['gmacs_per_s']:.0f} GMAC/s at {t} thr" for t, v in per.items())))
    warning = doc.get("thermal", {}).get("warning")
    if warning:
        print(f"warning: {warning}")
