"""``bench-device``: FLOPs, memory, latency and accuracy per model x format x threads x batch, on this board.

  bench-device MODEL_DIR... [--formats tflite-int8,tflite-fp32,onnx,torch] [--threads 1,2,4]
               [--batch 1,8] [--data LABELLED_DIR] [--frames DIR] [--out results/]
  bench-device report RESULTS... [-o report.md]

Each configuration runs in a fresh process; one JSON per run lands in results/<board>/.
``bench-device report`` merges the files of several boards into report.md + report.html.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cytoedge.edge_app.clitools import Parser, run_cli
from cytoedge.edge_app.configfile import add_config_option, parse_args
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.formats import FORMATS, parse_formats

REPORT_EPILOG = "Merge result files into one report: bench-device report results/ -o report.md"


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bench-device", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPORT_EPILOG)
    add_config_option(p)
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL_DIR", help="folders written by edge-convert")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated, from {','.join(FORMATS)} (default: every format in the model card)")
    p.add_argument("--threads", default=None,
                   help="interpreter threads, comma-separated, e.g. 1,2,4 (default: the board profile's threads)")
    p.add_argument("--batch", default="1", help="images per invocation, comma-separated (default: 1)")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled folder (SIPaKMeD tree or one folder per class): accuracy, macro-F1, agreement")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many --data images (spread evenly)")
    p.add_argument("--frames", type=Path, default=None,
                   help="folder of microscope frames: cell finder + classifier end to end (frames/s, cells/s)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    p.add_argument("--board", default=None, help="board profile name or .toml file (default: detected)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default: 10)")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs, at least (default: 2)")
    p.add_argument("--min-runs", type=int, default=50, help="timed runs, at least (default: 50)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before one configuration is abandoned (default: 600)")
    p.add_argument("--no-peak", action="store_true",
                   help="skip the board's compute peak (one large 1x1 convolution, int8 and fp32) and the roofline")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def get_report_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bench-device report",
               description="Merge bench-device result files (any boards) into one Markdown and one "
                           "self-contained HTML report with plots.")
    add_config_option(p)
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="result files or folders (searched recursively)")
    p.add_argument("-o", "--output", type=Path, default=Path("report.md"),
                   help="Markdown file to write; the HTML goes beside it (default: report.md)")
    return p


def parse_ints(text: str | None, option: str) -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; anything but whole numbers >= 1 is a one-line error."""
    if text is None:
        return None
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise CytoEdgeError(f"{option} takes whole numbers separated by commas, e.g. 1,2,4 (got {text!r})") from None
    if not values or any(v < 1 for v in values):
        raise CytoEdgeError(f"{option} values must be >= 1 (got {text!r}), e.g. {option} 1,2,4")
    return list(dict.fromkeys(values))


def _bench(argv: Sequence[str] | None) -> int:
    from cytoedge.benchmarks.results import write_result
    from cytoedge.benchmarks.suite import BenchOptions, run_suite
    from cytoedge.benchmarks.table import print_table

    a = parse_args(get_parser(), list(argv or []), sections=("report",))
    opts = BenchOptions(
        models=a.models,
        formats=[f.name for f in parse_formats(a.formats)] if a.formats is not None else None,
        threads=parse_ints(a.threads, "--threads"),
        batch=parse_ints(a.batch, "--batch") or [1],
        data=a.data, max_images=a.max_images, frames=a.frames, out=a.out, board=a.board,
        warmup=a.warmup, min_time=a.min_time, min_runs=a.min_runs, timeout=a.timeout, peak=not a.no_peak,
    )
    say = (lambda s: None) if a.quiet else (lambda s: print(f"bench-device: {s}", file=sys.stderr, flush=True))
    doc = run_suite(opts, progress=say, warn=lambda s: print(f"bench-device: {s}", file=sys.stderr, flush=True))
    path = write_result(doc, opts.out)
    print_table(doc)
    print(f"results: {path}")
    failed = [r for r in doc["rows"] if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} configuration(s) failed; their reasons are in the table and the result file",
              file=sys.stderr)
    return 0


def _report(argv: Sequence[str]) -> int:
    from cytoedge.benchmarks.report import build_report

    a = parse_args(get_report_parser(), argv, section="report")
    md, html = build_report(a.results, a.output)
    print(f"report: {md} and {html}")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "report":
        return _report(args[1:])
    return _bench(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("bench-device", _main, argv)
