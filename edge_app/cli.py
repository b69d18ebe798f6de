"""``edge-app``: the on-device command (capture -> find cells -> classify -> store -> report).

    edge-app --model models/shufflenet --source FRAMES_DIR --slide demo
    edge-app report --slide demo [--report-format md|json|csv] [-o FILE]
    edge-app boards                 # the board profiles and the detected board
    edge-app --model M --source S --slide demo --web    # the same, watched in a browser
    edge-app serve --out cytoedge-data                  # browse results and review crops
    edge-app export-reviews --out cytoedge-data --to reviewed/   # reviewed crops for edge-train --data
    edge-app classify --model models/shufflenet crops/ 'more/*.png' [--json FILE] [--csv FILE]   # crops, no finder
    edge-app store check --out cytoedge-data            # integrity check; 'store recover' salvages a damaged file
    edge-app model install DIR --out cytoedge-data      # keep a model in the store and use it; 'model rollback'
    edge-app --config /etc/cytoedge/edge-app.toml       # options from a file (hardware/systemd/edge-app.toml)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cytoedge.edge_app.clitools import DeprecatedAlias, Parser, fraction_arg, run_cli
from cytoedge.edge_app.configfile import add_config_option, parse_args
from cytoedge.edge_app.errors import CytoEdgeError

if TYPE_CHECKING:
    from cytoedge.edge_app.app import AppOptions, RunSummary
    from cytoedge.edge_app.report import TriageRule
    from cytoedge.edge_app.web.live import LiveState
    from cytoedge.edge_app.web.server import WebServer

DEFAULT_OUT = Path("cytoedge-data")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _percent(share: float) -> str:
    """``0.02`` -> ``2%%`` (escaped for argparse's help formatting)."""
    return f"{100 * share:g}%".replace("%", "%%")


def _pixels(text: str) -> int:
    try:
        v = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of pixels: {text!r}") from None
    if v < 1024:
        raise argparse.ArgumentTypeError(f"must be at least 1024 pixels, got {text}")
    return v


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise argparse.ArgumentTypeError(f"write WIDTHxHEIGHT, e.g. 2028x1520, got {text!r}")
    return int(w), int(h)


def get_parser() -> argparse.ArgumentParser:
    from cytoedge.edge_app.finder import FinderConfig
    from cytoedge.edge_app.imagefile import DEFAULT_MAX_PIXELS
    from cytoedge.edge_app.stage import StageConfig
    from cytoedge.edge_app.store import CROP_POLICIES

    fc = FinderConfig()
    sc = StageConfig()
    p = Parser(
        prog="edge-app", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find the cells in microscope frames, classify each on-device, keep a per-slide record.",
        epilog="Also: 'edge-app report --slide ID' (the slide report), 'edge-app boards' (board profiles),\n"
               "'edge-app serve' (the web view without capture), 'edge-app export-reviews' (reviewed crops),\n"
               "'edge-app classify --model DIR PATH...' (single-cell crops, no finder).\n"
               "'edge-app store check|recover' (a damaged store).\n"
               "A screening aid, not a diagnosis.")
    add_config_option(p)
    p.add_argument("--model", type=Path, default=None,
                   help="model folder written by edge-convert (model_card.json); default: the model installed in "
                        "the store with 'edge-app model install'")
    p.add_argument("--source", default="",
                   help="folder or glob of images, an image or video file, cam:N, /dev/videoN, gst:PIPELINE or "
                        "picam (default: the board profile's camera)")
    p.add_argument("--slide", help="slide ID, used in the store and crop folders (default: slide-<date>-<time>)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="store folder (default: %(default)s)")
    p.add_argument("--format", dest="fmt", choices=("tflite-int8", "tflite-fp32"),
                   help="artifact to run (default: int8 if the card has an accepted one, else fp32)")
    p.add_argument("--threads", type=int, help="interpreter threads (default: the board profile's)")
    p.add_argument("--board", help="board profile name or .toml file (default: detected); see 'edge-app boards'")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="cells whose calibrated top-class confidence is below this are 'unknown' (default: %(default)s)")
    p.add_argument("--allow-rejected", action="store_true",
                   help="run an artifact that failed edge-convert's accuracy gate")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--show", action="store_true", help="show annotated frames in a window (needs a display)")
    p.add_argument("--save-annotated", action="store_true", help="save annotated frames under OUT/annotated/SLIDE/")
    p.add_argument("--save-crops", choices=CROP_POLICIES, default="review",
                   help="which cell crops to save for review: review = abnormal + unknown (default: %(default)s)")
    p.add_argument("--min-free-mb", type=_positive_float, default=200.0,
                   help="stop saving crops when less disk than this is free (default: %(default)s)")
    p.add_argument("--camera-timeout", type=_positive_float, default=30.0,
                   help="seconds without a frame before a camera is given up (default: %(default)s)")
    p.add_argument("--camera-size", type=_size, help="camera resolution WIDTHxHEIGHT (default: the board's)")
    p.add_argument("--max-fps", type=float,
                   help="process at most this many frames per second (e.g. replay files at camera pace)")
    p.add_argument("--rescan", action="store_true",
                   help="replace the slide's earlier frames and cells with a fresh pass (default: a rerun skips the "
                        "frames the slide already holds, by content; refused once its cells have reviews)")
    p.add_argument("--max-frame-pixels", type=_pixels, default=DEFAULT_MAX_PIXELS,
                   help="skip frames larger than this many pixels; files are checked by their header, before "
                        "decoding (default: %(default)s)")
    p.add_argument("--trust", type=Path, action="append", metavar="PUBKEY",
                   help="run only models whose card is signed by this Ed25519 public key (PEM, from "
                        "'edge-convert keygen'); repeat for several keys (default: the board profile's [security] trust)")
    w = p.add_argument_group("web view")
    w.add_argument("--web", action="store_true",
                   help="serve the live page, slide reports and review queue while capturing; stays up after "
                        "the source ends until Ctrl-C")
    _add_web_options(w)
    g = p.add_argument_group("cell finder")
    g.add_argument("--min-cell-area", type=float, default=fc.min_area,
                   help="smallest cell, as a fraction of the frame area (default: %(default)s)")
    g.add_argument("--max-cell-area", type=float, default=fc.max_area,
                   help="largest cell, as a fraction of the frame area (default: %(default)s)")
    g.add_argument("--min-solidity", type=float, default=fc.min_solidity,
                   help="area / convex-hull area below which a blob is debris (default: %(default)s)")
    g.add_argument("--max-elongation", type=float, default=fc.max_elongation,
                   help="long / short side above which a blob is a fibre (default: %(default)s)")
    g.add_argument("--no-split", action="store_true", help="do not separate touching cells")
    g.add_argument("--crop-margin", type=float, default=fc.margin,
                   help="margin around each cell in its crop, share of its longer side (default: %(default)s)")
    g.add_argument("--work-width", type=int, default=fc.work_width,
                   help="frames wider than this are searched at this width (default: %(default)s)")
    m = p.add_argument_group("stage (a microscope moved by hand)")
    m.add_argument("--stage", choices=("manual", "fixed"),
                   help="manual: track the view's motion and focus, record each field once when it has settled in "
                        "focus, and count a cell seen before once; fixed: every frame is a field (default: manual for "
                        "a live camera, fixed for files and video)")
    m.add_argument("--focus-rel", type=float, default=sc.focus_rel,
                   help="manual stage: a frame is in focus at this share of the sharpest frame seen so far "
                        "(default: %(default)s)")
    m.add_argument("--focus-floor", type=float, default=sc.focus_floor,
                   help="manual stage: ... and at this focus score at least (default: %(default)s)")
    m.add_argument("--camera-lock", type=_positive_float, default=2.0, metavar="SECONDS",
                   help="picam: after this many seconds of automatic exposure and white balance, lock the measured "
                        "exposure time, analogue gain and colour gains for the slide, recorded in the run; 0: never "
                        "(default: %(default)s)")
    m.add_argument("--flat-field", type=Path, metavar="FILE",
                   help="divide this illumination field (written by 'edge-app calibrate') out of every frame before "
                        "the finder")
    m.add_argument("--preparation", choices=("conventional", "liquid-based"), default="conventional",
                   help="the live page counts classifiable squamous cells against this preparation's adequacy "
                        "threshold: 5 000 conventional, 2 000 liquid-based (default: %(default)s)")
    m.add_argument("--adequacy-cells", type=int,
                   help="the lab's own adequacy threshold in classifiable squamous cells (default: the preparation's)")
    m.add_argument("--still-px", type=float, default=sc.still_px,
                   help="manual stage: a view moving less than this many pixels per frame is still "
                        "(default: %(default)s)")
    _add_verbosity(p)
    return p


def get_report_parser() -> argparse.ArgumentParser:
    from cytoedge.edge_app.adequacy import PREPARATIONS
    from cytoedge.edge_app.report import REPORT_FORMATS, TriageRule

    r = TriageRule()
    p = Parser(prog="edge-app report", description="The slide report (a screening aid, not a diagnosis).")
    add_config_option(p)
    p.add_argument("--slide", required=True, help="slide ID")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="store folder (default: %(default)s)")
    p.add_argument("--report-format", choices=REPORT_FORMATS, default="md",
                   help="output format of the report (default: %(default)s)")
    p.add_argument("--format", action=DeprecatedAlias, replacement="--report-format", dest="report_format",
                   choices=REPORT_FORMATS, help="deprecated name of --report-format (--format names the model "
                   "artifact in edge-app and its config file)")
    p.add_argument("-o", "--output", type=Path, help="write the report to this file (default: print it)")
    p.add_argument("--refer-abnormal-cells", type=int, default=r.min_abnormal_cells,
                   help="refer when at least this many cells are abnormal (default: %(default)s)")
    p.add_argument("--refer-abnormal-fraction", type=fraction_arg, default=r.abnormal_fraction, metavar="SHARE",
                   help="... or when this share of the cells is abnormal: a fraction (0.02) or a percentage (2%%) "
                        f"(default: {_percent(r.abnormal_fraction)})")
    p.add_argument("--refer-unknown-fraction", type=fraction_arg, default=r.unknown_fraction, metavar="SHARE",
                   help="refer when more than this share is unclassifiable: a fraction or a percentage "
                        f"(default: {_percent(r.unknown_fraction)})")
    p.add_argument("--min-cells", type=int, default=r.min_cells,
                   help="count rule (older model cards): fewer cells than this: insufficient (default: %(default)s)")
    p.add_argument("--limit", type=fraction_arg, default=r.limit, metavar="SHARE",
                   help="the lab's limit on the corrected abnormal fraction: refer when its 95 %% interval lies above, "
                        "no further review only when below and the slide is adequate; a fraction or a percentage "
                        f"(default: {_percent(r.limit)})")
    p.add_argument("--preparation", choices=tuple(PREPARATIONS), default=r.preparation,
                   help="adequacy: classifiable squamous cells a slide needs, 5 000 conventional or 2 000 "
                        "liquid-based (default: %(default)s)")
    p.add_argument("--adequacy-cells", type=int, default=None, metavar="N",
                   help="the lab's own adequacy figure instead of the preparation's")
    p.add_argument("--gallery", type=int, default=r.gallery, metavar="K",
                   help="the review list leads with the K cells most likely abnormal (default: %(default)s)")
    p.add_argument("--review-limit", type=int, default=100, help="crops listed for review (default: %(default)s)")
    return p


def _add_web_options(g: argparse._ActionsContainer) -> None:
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; any other needs a token)")
    g.add_argument("--port", type=int, default=8080, help="port (default: %(default)s; 0: any free port)")
    g.add_argument("--token", help="access token (default: none on 127.0.0.1, else generated and printed)")


def _add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "--store", dest="out", type=Path, default=DEFAULT_OUT,
                   help="store folder written by edge-app (default: %(default)s)")


def get_serve_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-app serve",
               description="The web view of a store without capturing: slides, reports, review queue.")
    add_config_option(p)
    _add_store_option(p)
    _add_web_options(p)
    return p


def get_export_reviews_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-app export-reviews",
               description="Write the reviewed crops as an ImageFolder tree (one folder per class) "
                           "that 'edge-train --data DIR' reads.")
    add_config_option(p)
    _add_store_option(p)
    p.add_argument("--to", type=Path, required=True,
                   help="folder to write (new, empty, or an earlier export, which is replaced)")
    return p


def get_classify_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="edge-app classify",
        description="Classify single-cell crops (image files, folders - searched recursively - or globs) without "
                    "the cell finder: one row per image with its class, clinical group, calibrated confidence, "
                    "open-set score and whether it was rejected as unknown. A screening aid, not a diagnosis.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image file, folder or glob (quote globs)")
    p.add_argument("--model", type=Path, required=True, help="model folder written by edge-convert (model_card.json)")
    p.add_argument("--format", dest="fmt", choices=("tflite-int8", "tflite-fp32"),
                   help="artifact to run (default: int8 if the card has an accepted one, else fp32)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write a JSON list of {file, class, group, confidence, score, unknown}")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write the same rows as CSV")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default: %(default)s)")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="crops whose calibrated confidence is below this are 'unknown' (default: %(default)s)")
    p.add_argument("--allow-rejected", action="store_true",
                   help="run an artifact that failed edge-convert's accuracy gate")
    p.add_argument("--no-table", action="store_true", help="no per-image table on the terminal, only the summary")
    _add_verbosity(p)
    return p


def get_store_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-app store", description="Check a store file, or recover the rows of a "
               "damaged one into a new file (the damaged file is kept beside it).")
    sub = p.add_subparsers(dest="action", required=True, metavar="{check,recover}")
    check = sub.add_parser("check", help="PRAGMA integrity_check: exit 0 when sound, 3 when damaged")
    _add_store_option(check)
    rec = sub.add_parser("recover", help="copy every readable row into a new file and put it in place")
    _add_store_option(rec)
    rec.add_argument("--to", type=Path, help="write the recovered file here instead, leaving the store as it is")
    return p


def get_calibrate_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-app calibrate",
                                description="Record the illumination field (vignetting, colour cast) on an empty area "
                                            "of a slide, for 'edge-app --flat-field FILE' to divide out before the "
                                            "finder. Stored with the board and camera it was measured on.")
    add_config_option(p)
    p.add_argument("--source", default="", help="camera or frames of an empty area (default: the board's camera)")
    p.add_argument("--board", help="board profile name or .toml file (default: detected)")
    p.add_argument("--camera-size", type=_size, help="camera resolution WIDTHxHEIGHT (default: the board's)")
    p.add_argument("--frames", type=int, default=20, help="frames to average (default: %(default)s)")
    p.add_argument("--skip", type=int, default=5,
                   help="frames skipped first while a camera settles (default: %(default)s)")
    p.add_argument("--to", type=Path, help="file to write (default: OUT/calibration/flat-field-BOARD.npz)")
    _add_store_option(p)
    return p


def get_model_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-app model", description="The models this store has run: install one "
                                "(copied into the store, used when edge-app runs without --model), list them, or "
                                "roll back to the one in use before. Every slide record keeps the model that made it.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{install,list,rollback}")
    inst = sub.add_parser("install", help="copy a model folder into the store and use it from now on")
    inst.add_argument("model", type=Path, help="model folder written by edge-convert (model_card.json)")
    _add_store_option(inst)
    _add_store_option(sub.add_parser("list", help="every model the store has seen; * marks the one in use"))
    _add_store_option(sub.add_parser("rollback", help="use the model that was in use before the current one"))
    return p


def get_boards_parser() -> argparse.ArgumentParser:
    return Parser(prog="edge-app boards", description="List board profiles and the detected board.")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")


def _run(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.app import AppOptions, run
    from cytoedge.edge_app.finder import FinderConfig
    from cytoedge.edge_app.stage import StageConfig

    a = parse_args(get_parser(), argv, sections=SUBCOMMANDS)
    logging.basicConfig(format="edge-app: %(message)s", level=logging.WARNING if a.quiet else logging.INFO,
                        stream=sys.stderr)
    try:
        finder = FinderConfig(work_width=a.work_width, min_area=a.min_cell_area, max_area=a.max_cell_area,
                              min_solidity=a.min_solidity, max_elongation=a.max_elongation, split=not a.no_split,
                              margin=a.crop_margin)
    except ValueError as exc:
        raise CytoEdgeError(f"cell finder settings: {exc}") from None
    if a.model is None:
        from cytoedge.edge_app.models import installed_model_dir

        a.model = installed_model_dir(a.out)
    try:
        stage_cfg = StageConfig(focus_rel=a.focus_rel, focus_floor=a.focus_floor, still_px=a.still_px,
                                work_width=a.work_width)
    except ValueError as exc:
        raise CytoEdgeError(f"{exc} (--focus-rel, --focus-floor, --still-px)") from None
    opts = AppOptions(model=a.model, source=a.source, slide=a.slide, out=a.out, fmt=a.fmt, threads=a.threads,
                      board=a.board, min_confidence=a.min_confidence, allow_rejected=a.allow_rejected,
                      max_frames=a.max_frames, show=a.show, save_annotated=a.save_annotated, save_crops=a.save_crops,
                      min_free_mb=a.min_free_mb, camera_timeout=a.camera_timeout, camera_size=a.camera_size,
                      max_fps=a.max_fps, finder=finder, rescan=a.rescan, max_frame_pixels=a.max_frame_pixels,
                      trust=a.trust, stage=a.stage, stage_cfg=stage_cfg, camera_lock=a.camera_lock,
                      flat_field=a.flat_field)
    if a.web:
        return _run_with_web(a, opts)
    _print_summary(run(opts))
    return 0


def _print_summary(s: "RunSummary") -> None:
    groups = ", ".join(f"{g} {s.per_group.get(g, 0)}" for g in ("normal", "benign", "abnormal", "unknown"))
    skipped = sum(s.skipped.values())
    converted = ", ".join(f"{k} {v}" for k, v in s.converted.items())
    print(f"slide {s.slide}: {s.frames_done} frames ({skipped} skipped"
          + (f": {', '.join(f'{k} {v}' for k, v in s.skipped.items())}" if skipped else "")
          + (f"; converted: {converted}" if converted else "")
          + (f"; {s.resumed} already recorded, not counted again" if s.resumed else "") + f"), {s.cells} cells "
          f"({groups}) in {s.seconds:.1f} s ({s.frames_per_s:.2f} frames/s); stopped by {s.stopped_by}")
    if s.crops_warning:
        print(f"warning: {s.crops_warning}")
    if s.stage == "manual":
        views = ", ".join(f"{k} {v}" for k, v in s.views.items())
        print(f"manual stage: {s.frames_done} settled fields from {s.frames_read} frames ({views}); "
              f"{s.seen_again} cells seen again, not counted again; {s.registered} fields re-registered")
    print(f"store: {Path(s.store) / 'cytoedge.sqlite'}; report: edge-app report --slide {s.slide} --out {s.store}")


def _web_server(a: argparse.Namespace, live: "LiveState | None" = None) -> "WebServer":
    from cytoedge.edge_app.web.app import WebConfig
    from cytoedge.edge_app.web.security import resolve_token
    from cytoedge.edge_app.web.server import WebServer

    from cytoedge.edge_app.adequacy import adequacy_threshold

    rule = _config_rule(a.config)
    # edge-app --web counts towards its own --preparation / --adequacy-cells; serve shows the report's rule
    need = adequacy_threshold(a.preparation, a.adequacy_cells) if hasattr(a, "preparation") else rule.adequacy_needed
    cfg = WebConfig(store=a.out, token=resolve_token(a.host, a.token), live=live, rule=rule, adequacy_cells=need)
    return WebServer(cfg, a.host, a.port)


def _config_rule(config: str | None) -> "TriageRule":
    """The triage rule ``edge-app report --config FILE`` judges by (the file's [report] table), for the web view."""
    a = parse_args(get_report_parser(), ["--slide", "", *(["--config", config] if config else [])], section="report")
    return _triage_rule(a)


def _triage_rule(a: argparse.Namespace) -> "TriageRule":
    from cytoedge.edge_app.report import TriageRule

    return TriageRule(a.refer_abnormal_cells, a.refer_abnormal_fraction, a.refer_unknown_fraction, a.min_cells,
                      limit=a.limit, preparation=a.preparation, adequacy_cells=a.adequacy_cells, gallery=a.gallery)


def _run_with_web(a: argparse.Namespace, opts: "AppOptions") -> int:
    """Capture with the web view beside it; after the source ends the view stays up until Ctrl-C."""
    from cytoedge.edge_app.app import default_slide_id, run
    from cytoedge.edge_app.web.live import LiveState

    live = LiveState()
    opts.slide = opts.slide or default_slide_id()
    with _web_server(a, live) as web:
        print(web.describe(), flush=True)
        live.start(opts.slide)
        summary = run(opts, on_frame=live.on_frame)
        live.finish(summary.stopped_by)
        _print_summary(summary)
        if summary.stopped_by in ("SIGINT", "SIGTERM"):
            return 0
        print(f"capture finished; the web view stays up at {web.url} - Ctrl-C to stop", flush=True)
        web.wait()
    return 0


def _serve(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.store import DB_FILE

    a = parse_args(get_serve_parser(), argv, section="serve")
    if not (a.out / DB_FILE).is_file():
        raise CytoEdgeError(f"no store at {a.out / DB_FILE}: run edge-app first, or pass the folder it wrote with --out")
    with _web_server(a) as web:
        print(web.describe() + " - Ctrl-C to stop", flush=True)
        web.wait()
    return 0


def _export_reviews(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.store import Store
    from cytoedge.edge_app.web.reviews import export_imagefolder

    a = parse_args(get_export_reviews_parser(), argv, section="export-reviews")
    with Store(a.out, create=False) as store:
        res = export_imagefolder(store, a.to)
    classes = ", ".join(f"{k} {v}" for k, v in sorted(res.per_class.items()))
    extra = "".join(f"; {n} {what}" for n, what in ((res.not_a_cell, "marked not_a_cell (listed, not exported)"),
                                                     (res.missing_crop, "without a crop file")) if n)
    print(f"exported {res.files} reviewed crops to {res.folder} ({classes}{extra}); "
          f"train on them with: edge-train --data {res.folder}")
    return 0


def _report(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_text
    from cytoedge.edge_app.coverage import coverage_png, slide_fields
    from cytoedge.edge_app.report import build_report, render
    from cytoedge.edge_app.store import Store

    a = parse_args(get_report_parser(), argv, section="report")
    rule = _triage_rule(a)
    with Store(a.out, create=False) as store:
        text = render(build_report(store, a.slide, rule, a.review_limit), a.report_format)
        fields = slide_fields(store, a.slide)
    picture = None
    if fields:  # manual stage: the coverage map as a picture beside the report (the slide page shows the same)
        picture = (a.output.parent / f"{a.output.stem}-coverage.png") if a.output else \
            (a.out / "coverage" / f"{a.slide}.png")
        atomic_write_bytes(picture, coverage_png(fields))
        if a.report_format == "md":
            text += (f"\n## Coverage\n\n{len(fields)} fields counted once each (manual stage), in slide coordinates:\n\n"
                     f"![coverage map]({picture.name if a.output else picture})\n")
    if a.output:
        atomic_write_text(a.output, text)
        print(f"report written to {a.output}" + (f"; coverage map {picture}" if picture else ""))
    else:
        sys.stdout.write(text)
    return 0


def _classify(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.edge_app.crops import classify_files, crop_files, print_table, write_csv, write_json

    a = get_classify_parser().parse_args(argv)
    logging.basicConfig(format="edge-app: %(message)s", level=logging.WARNING, stream=sys.stderr)
    if a.threads < 1:
        raise CytoEdgeError(f"--threads must be >= 1, got {a.threads}")
    files = crop_files(a.paths)
    clf = Classifier(a.model, a.fmt, threads=a.threads, min_confidence=a.min_confidence,
                     allow_rejected=a.allow_rejected)
    run = classify_files(clf, files)
    if not a.no_table and not a.quiet and run.rows:
        print_table(run, f"{clf.card.architecture} ({clf.format}): {len(run.rows)} crops")
    for path, writer in ((a.json, write_json), (a.csv, write_csv)):
        if path:
            writer(run, path)
    groups = run.per_group()
    unknown = groups.get("unknown", 0)
    print(f"classified {len(run.rows)} crops ({', '.join(f'{g} {n}' for g, n in sorted(groups.items())) or 'none'}; "
          f"unknown {unknown / max(1, len(run.rows)):.1%}) with {clf.card.architecture} ({clf.format}, open-set score "
          f"{clf.open_set.score} > {clf.threshold:.3g} = unknown, confidence calibrated at T={clf.temperature:.3g})"
          + (f"; skipped {len(run.skipped)} unreadable" if run.skipped else "")
          + "".join(f"; wrote {p}" for p in (a.json, a.csv) if p))
    if not run.rows:
        raise CytoEdgeError(f"none of the {len(files)} files could be read as an image")
    return 0


def _store(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.store_repair import StoreDamagedError, check_store, recover_store

    a = get_store_parser().parse_args(argv)
    if a.action == "check":
        res = check_store(a.out)
        if res.ok:
            print(f"store {res.db}: ok (PRAGMA integrity_check)")
            return 0
        for line in res.problems:
            print(f"  {line}")
        raise StoreDamagedError(f"store {res.db} is damaged ({len(res.problems)} problem(s) listed above): copy its "
                                f"readable rows into a new file with 'edge-app store recover --out {a.out}'")
    res = recover_store(a.out, a.to)
    if res.sound:
        print(f"store {res.recovered}: ok (PRAGMA integrity_check): nothing to recover, the file is left as it is")
        return 0
    kept = ", ".join(f"{t} {n}" for t, n in res.kept.items())
    print(f"recovered {res.recovered}: {kept} (integrity: {res.integrity})")
    for reason, n in res.dropped.items():
        print(f"  left out: {n} {reason}")
    if res.damaged_regions:
        print("  damaged regions skipped: " + ", ".join(f"{t} {n}" for t, n in res.damaged_regions.items()))
    if res.leftovers.get("orphan_crops"):
        print(f"  removed {res.leftovers['orphan_crops']} crop file(s) of cells left out")
    if res.damaged_copy is not None:
        print(f"the damaged file is kept as {res.damaged_copy}")
    return 0


def _calibrate(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.app import check_frame
    from cytoedge.edge_app.boards import resolve_board
    from cytoedge.edge_app.flatfield import measure
    from cytoedge.edge_app.sources import CameraSettings, open_source

    a = parse_args(get_calibrate_parser(), argv, section="calibrate")
    if a.frames < 1 or a.skip < 0:
        raise CytoEdgeError("--frames must be >= 1 and --skip >= 0")
    board = resolve_board(a.board)
    w, h = a.camera_size or (board.camera.width, board.camera.height)
    spec = a.source or board.camera.source
    frames = []
    with open_source(spec, CameraSettings(width=w, height=h, fps=board.camera.fps, controls=board.camera.controls,
                                          lock_after=0)) as src:
        for i, f in enumerate(src):
            image = check_frame(f.image, 32, 8192)[0] if f.image is not None else None
            if image is None or (src.live and i < a.skip):
                continue
            frames.append(image)
            if len(frames) >= a.frames:
                break
    if frames and any(fr.shape != frames[0].shape for fr in frames):
        raise CytoEdgeError("calibrate: the frames differ in size: give frames of one camera mode")
    ff = measure(frames, {"board": board.name, "source": spec, "camera": {"width": w, "height": h,
                                                                          "controls": board.camera.controls}})
    to = a.to or a.out / "calibration" / f"flat-field-{board.name}.npz"
    ff.save(to)
    print(f"flat field of {len(frames)} frames written to {to} (vignetting {ff.meta['vignetting']:.0%}); "
          f"use it with: edge-app --flat-field {to} ...")
    return 0


def _model(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.models import install_model, list_models, rollback_model
    from cytoedge.edge_app.store import Store

    a = get_model_parser().parse_args(argv)
    with Store(a.out, create=a.action == "install") as store:
        if a.action == "install":
            m = install_model(store, a.model)
            print(f"installed {m.architecture} {m.card_sha256[:12]} into {m.path(store)}; in use from now on "
                  f"(back to the previous one: edge-app model rollback --out {a.out})")
        elif a.action == "rollback":
            left, now = rollback_model(store)
            print(f"rolled back from {left.architecture} {left.card_sha256[:12]} to {now.architecture} "
                  f"{now.card_sha256[:12]} ({now.path(store)})")
        else:
            models = list_models(store)
            for m in models:
                parent = f", fine-tuned from {m.parent_card_sha256[:12]}" if m.parent_card_sha256 else ""
                print(f"{'*' if m.in_use else ' '} {m.card_sha256[:12]}  {m.architecture:22s} first seen "
                      f"{m.first_seen}{parent}  {m.folder}")
            if not models:
                print(f"no models in {a.out} yet")
    return 0


def _boards(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.boards import boards_dir, detect_board, list_profiles, load_profile

    get_boards_parser().parse_args(argv)
    print(f"profiles in {boards_dir()}:")
    for name in list_profiles():
        p = load_profile(name)
        print(f"  {name:18s} {p.title} ({p.cores} cores, {p.threads} threads, {p.interpreter})")
        print(f"  {'':18s} camera {p.camera.width}x{p.camera.height} at {p.camera.fps} fps: {p.camera.source}")
    d = detect_board()
    print(f"this machine: {d.name} - {d.title} ({d.detected})")
    return 0


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"report": _report, "boards": _boards, "serve": _serve,
                                                           "export-reviews": _export_reviews, "store": _store,
                                                           "classify": _classify, "calibrate": _calibrate,
                                                           "model": _model}


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]](args[1:])
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("edge-app", _main, argv)
