"""Accuracy and latency per input size for one architecture and recipe: which size to ship.

    python -m cytoedge.benchmarks.input_size --out runs/input_size                       # ShuffleNetV2, the demo's recipe
    python -m cytoedge.benchmarks.input_size --out runs/lite0 --sizes 96,128,160,224 \\
        --train-args "--model efficientnet_lite0 --pretrained --folds 5 --fold 0 --epochs 6 --lr 0.01 --milestones 4"

Cells are 60-200 px wide in a 1280x960 field, and every crop is resized to the model's
input: a smaller input is quadratically cheaper and may lose the nucleus' detail. For each
``--sizes`` value this trains with ``edge-train --input-size S <--train-args>`` on ``--data``,
converts with ``edge-convert --int8``, then runs ``bench-device`` on all of them together
(``--formats``, ``--threads``, accuracy on ``--heldout``, images none of the models saw) and
writes ``bench-device report`` (its "Input size" section and the accuracy-vs-latency plot
show the Pareto front). Each step is skipped when its output is already there, so an
interrupted study resumes. Data: ``--data`` / ``--heldout``, else the default synthetic set
(``edge-train synth``, seed 0) and a held-out one (seed 1) made under ``--out``.

The recommendation: the fastest size on the Pareto front whose held-out accuracy is within
two standard errors (binomial, on the held-out count) of the most accurate size's, i.e.
a size no test here can tell apart from the best. Printed, and written to ``--out/input_size.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytoedge.edge_app.errors import CytoEdgeError

DEMO_RECIPE = ("--model shufflenet_v2_x1_0 --folds 2 --fold 0 --epochs 12 --lr 0.02 --grad-clip 5 --lam 0.05 "
               "--no-progress")


def _step(what: str, done: bool, fn: Any, log: Any) -> None:
    if done:
        log(f"{what}: already there, skipped")
        return
    log(what)
    rc = fn()
    if rc:
        raise CytoEdgeError(f"{what} failed (exit {rc}): see its lines above")


def prepare_data(out: Path, log: Any) -> tuple[Path, Path]:
    from cytoedge.train.cli import main as train_main

    data, heldout = out / "data", out / "heldout"
    _step("synthetic training set (seed 0)", (data / "synth.json").is_file(),
          lambda: train_main(["synth", "--out", str(data), "--per-class", "200", "--frames", "8", "--seed", "0"]), log)
    _step("synthetic held-out set (seed 1)", (heldout / "synth.json").is_file(),
          lambda: train_main(["synth", "--out", str(heldout), "--per-class", "100", "--frames", "4", "--seed", "1"]), log)
    return data, heldout


def train_and_convert(size: int, data: Path, out: Path, train_args: list[str], log: Any) -> Path:
    from cytoedge.convert.cli import main as convert_main
    from cytoedge.train.cli import main as train_main

    run, model = out / "runs" / f"s{size}", out / "models" / f"s{size}"
    fold = next((train_args[i + 1] for i, a in enumerate(train_args[:-1]) if a == "--fold"), "0")
    bundle = run / f"fold_{fold}"
    _step(f"edge-train at {size} px", (bundle / "bundle.json").is_file(),
          lambda: train_main(["--data", str(data), "--out", str(run), "--input-size", str(size), *train_args]), log)
    _step(f"edge-convert --int8 at {size} px", (model / "model_card.json").is_file(),
          lambda: convert_main([str(bundle), "--int8", "--max-drop", "100", "--out", str(model)]), log)
    return model


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest size on the Pareto front that no test here tells apart from the most accurate one.

    >>> r = recommend([{"size": 96, "p50_ms": 0.2, "accuracy": 0.60, "n": 500},
    ...                {"size": 128, "p50_ms": 0.3, "accuracy": 0.70, "n": 500},
    ...                {"size": 224, "p50_ms": 0.8, "accuracy": 0.72, "n": 500}])
    >>> r["size"], r["pareto"]
    (128, [96, 128, 224])
    """
    from cytoedge.benchmarks.report import pareto_front

    rated = [r for r in rows if r.get("accuracy") is not None]
    if not rated:
        raise CytoEdgeError("no size has an accuracy figure: pass --heldout with labelled images")
    front = pareto_front([(r["p50_ms"], r["accuracy"]) for r in rated])
    on_front = sorted((r for r in rated if (r["p50_ms"], r["accuracy"]) in front), key=lambda r: r["p50_ms"])
    best = max(rated, key=lambda r: r["accuracy"])
    se = math.sqrt(max(best["accuracy"] * (1 - best["accuracy"]), 1e-9) / best["n"])
    pick = next(r for r in on_front if r["accuracy"] >= best["accuracy"] - 2 * se)
    return {"size": pick["size"], "pareto": [r["size"] for r in on_front], "best_size": best["size"],
            "best_accuracy": best["accuracy"], "standard_error": round(se, 4),
            "rule": "fastest Pareto size within 2 standard errors of the most accurate size's held-out accuracy"}


def table(doc: dict[str, Any], fmt: str, models: dict[int, Path]) -> list[dict[str, Any]]:
    """Per size: MACs, p50 latency at the fastest thread count (batch 1), held-out accuracy of ``fmt``."""
    by_name = {m["name"]: m for m in doc["models"]}
    rows = []
    for size, path in sorted(models.items()):
        m = by_name[path.resolve().name]
        lat = [r for r in doc["rows"] if r["model"] == m["name"] and r["format"] == fmt and r["status"] == "ok"
               and r["batch"] == 1]
        best = min(lat, key=lambda r: r["latency"]["p50_ms"]) if lat else None
        acc = ((m.get("accuracy") or {}).get(fmt) or {})
        cost = (m["artifacts"].get(fmt) or {}).get("cost") or {}
        rows.append({"size": size, "model": m["name"], "format": fmt, "gmacs": cost.get("macs", 0) / 1e9,
                     "p50_ms": best["latency"]["p50_ms"] if best else None, "threads": best["threads"] if best else None,
                     "accuracy": acc.get("accuracy") if acc.get("status") == "ok" else None,
                     "macro_f1": acc.get("macro_f1"), "agreement": acc.get("agreement"), "n": acc.get("n", 0)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from cytoedge.benchmarks.cli import main as bench_main
    from cytoedge.benchmarks.report import build_report
    from cytoedge.benchmarks.results import load_results

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.input_size", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/input_size"), help="everything goes here (default: %(default)s)")
    p.add_argument("--sizes", default="96,128,160,224", help="input sizes (default: %(default)s)")
    p.add_argument("--train-args", default=DEMO_RECIPE,
                   help="edge-train options besides --data/--out/--input-size (default: the demo's recipe: %(default)s)")
    p.add_argument("--data", type=Path, help="training data (default: the synthetic set, made under --out)")
    p.add_argument("--heldout", type=Path, help="labelled images for accuracy (default: a synthetic held-out set)")
    p.add_argument("--formats", default="tflite-int8", help="formats to measure (default: %(default)s)")
    p.add_argument("--threads", default=None, help="bench-device --threads (default: the board profile's)")
    a = p.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in a.sizes.split(",")})
    except ValueError:
        raise SystemExit("input_size: --sizes takes whole numbers separated by commas, e.g. 96,128,224") from None

    def log(msg: str) -> None:
        print(f"input_size: {msg}", file=sys.stderr, flush=True)

    a.out.mkdir(parents=True, exist_ok=True)
    data, heldout = prepare_data(a.out, log) if a.data is None or a.heldout is None else (a.data, a.heldout)
    data, heldout = a.data or data, a.heldout or heldout
    models = {s: train_and_convert(s, data, a.out, shlex.split(a.train_args), log) for s in sizes}
    results = a.out / "results"
    bench = [*map(str, models.values()), "--formats", a.formats, "--data", str(heldout), "--out", str(results),
             "--quiet", *(["--threads", a.threads] if a.threads else [])]
    _step("bench-device on every size", False, lambda: bench_main(bench), log)
    doc = load_results([results])[-1]
    md, _ = build_report([results], a.out / "report.md")
    fmt = a.formats.split(",")[0]
    rows = table(doc, fmt, models)
    rec = recommend(rows)
    print(f"input size study: {doc['board']['title']} ({doc['board'].get('cpu_model', '')}), {fmt}, held-out "
          f"{rows[0]['n']} images ({heldout}); edge-train {a.train_args}")
    print(f"{'size':>5} {'GMACs':>7} {'p50 ms':>7} {'thr':>4} {'acc %':>6} {'F1 %':>6} {'Pareto':>7}")
    for r in rows:
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        f1 = "" if r["macro_f1"] is None else f"{100 * r['macro_f1']:.1f}"
        print(f"{r['size']:>5} {r['gmacs']:7.3f} {r['p50_ms'] or 0:7.2f} {r['threads'] or '':>4} {acc:>6} {f1:>6} "
              f"{'yes' if r['size'] in rec['pareto'] else '':>7}")
    print(f"recommended: {rec['size']} px ({rec['rule']}; best {rec['best_size']} px at "
          f"{100 * rec['best_accuracy']:.1f} %, standard error {100 * rec['standard_error']:.1f} points); report {md}")
    from cytoedge.edge_app.atomic import atomic_write_json

    atomic_write_json(a.out / "input_size.json", {"train_args": a.train_args, "heldout": str(heldout), "format": fmt,
                                                  "board": doc["board"], "rows": rows, "recommendation": rec})
    return 0


if __name__ == "__main__":
    from cytoedge.edge_app.clitools import run_cli

    sys.exit(run_cli("input_size", main))
