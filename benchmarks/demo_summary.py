"""The line ``make demo`` ends with: the held-out accuracy its model reached, per format.

    python -m cytoedge.benchmarks.demo_summary demo/results

Reads the newest ``bench-device`` result under the folder (run with ``--data`` on a held-out
tree) and prints one line, int8 first (the file the device runs)::

    demo: held-out accuracy of efficientnet_lite0 on 200 crops no training run saw: tflite-int8 90.5 %, ...

Exit status 2 with a one-line error when no result holds an accuracy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

ORDER = ("tflite-int8", "tflite-fp32", "onnx", "torch")


def summary_line(doc: dict) -> str:
    """The sentence for the first model of one bench-device result that was scored on labelled data."""
    for model in doc.get("models", []):
        acc = {f: a for f, a in (model.get("accuracy") or {}).items() if a.get("status") == "ok"}
        if not acc:
            continue
        n = next(iter(acc.values()))["n"]
        parts = [f"{fmt} {100 * acc[fmt]['accuracy']:.1f} %" for fmt in ORDER if fmt in acc]
        return (f"demo: held-out accuracy of {model.get('architecture', model.get('name'))} on {n} crops "
                f"no training run saw: " + ", ".join(parts))
    raise LookupError("no model in the result was scored on labelled data (run bench-device with --data)")


def main(argv: Sequence[str] | None = None) -> int:
    from cytoedge.benchmarks.results import ResultsError, load_results

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.demo_summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the folder bench-device wrote (--out)")
    args = p.parse_args(argv)
    try:
        print(summary_line(load_results([args.results])[-1]))
    except (ResultsError, LookupError) as exc:
        print(f"demo_summary: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
