"""The on-device loop: source -> cell finder -> classifier -> store (-> display).

The steps run in three threads (:mod:`edge_app.pipeline`): a reader decodes and searches frame
n+1 while the main thread classifies frame n and a writer stores frame n-1 (crops fsynced, then
the frame's transaction), in source order.

:func:`run` is the Python API behind ``edge-app``. It builds the classifier first (a
bad, tampered, unsafe or unsigned model stops here), opens the store and the source,
cleans up after an interrupted earlier run (:mod:`edge_app.leftovers`), learns which
frames the slide already holds (:mod:`edge_app.resume`: those are skipped, or replaced
with ``--rescan``), then processes frame after frame. A bad frame (None, empty, wrong
rank, too small or too large) is skipped and counted; grey, RGBA, 16-bit and float frames are converted and counted;
an unreadable file is logged and skipped. SIGINT/SIGTERM finish the current frame,
record the run's summary and close the store; a second signal stops at once (the
frame in flight is rolled back, every committed frame stays).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from cytoedge.edge_app.boards import BoardProfile, board_check, resolve_board
from cytoedge.edge_app.classifier import Classifier, Prediction
from cytoedge.edge_app.display import Display, annotate, focus_bar, status_line
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.finder import Detection, FinderConfig, crops_of, find_cells
from cytoedge.edge_app.preprocess import as_bgr_uint8
from cytoedge.edge_app.imagefile import DEFAULT_MAX_PIXELS
from cytoedge.edge_app.leftovers import WriterLock, after_interrupted_runs
from cytoedge.edge_app.pipeline import InOrderWriter, Prefetcher
from cytoedge.edge_app.resume import CommittedFrames, start_slide
from cytoedge.edge_app.sources import CameraSettings, Frame, FrameSource, open_source
from cytoedge.edge_app.stage import CountedCells, Field, StageConfig, StageTracker, StageView
from cytoedge.edge_app.store import CellResult, FieldPlace, Store, check_slide_id

log = logging.getLogger("cytoedge.edge_app")


@dataclass
class AppOptions:
    model: Path  # folder with model_card.json (written by edge-convert)
    source: str  # see edge_app.sources; None-like "" means the board's camera
    slide: str | None = None  # None: "slide-<date>-<time>"
    out: Path = Path("cytoedge-data")  # the store folder
    fmt: str | None = None  # None: the card's int8 artifact if accepted, else fp32
    threads: int | None = None  # None: the board profile's default
    board: str | None = None  # None: detected
    min_confidence: float = 0.0  # crops under this calibrated confidence are "unknown"
    allow_rejected: bool = False  # run an artifact that failed edge-convert's accuracy gate
    max_frames: int | None = None  # stop after this many processed frames
    show: bool = False
    save_annotated: bool = False  # JPEGs under <out>/annotated/<slide>/
    save_crops: str = "review"  # none | abnormal | review (abnormal + unknown) | all
    min_free_mb: float = 200.0  # stop saving crops below this much free disk
    camera_timeout: float = 30.0  # seconds without a frame before a live camera is given up
    camera_size: tuple[int, int] | None = None  # None: the board profile's camera size
    max_fps: float | None = None  # None: as fast as frames come; else at most this many frames/s (replay at camera pace)
    min_frame_side: int = 32  # smaller frames are skipped
    max_frame_side: int = 8192  # larger frames are skipped (4K is 3840)
    max_frame_pixels: int = DEFAULT_MAX_PIXELS  # larger frames are skipped; files by their header, before decoding
    rescan: bool = False  # replace the slide's earlier frames instead of skipping the ones it holds
    trust: Sequence[Path] | None = None  # public keys the model card must be signed by; None: the board profile's
    finder: FinderConfig = field(default_factory=FinderConfig)
    stage: str | None = None  # manual | fixed; None: manual for a live camera, fixed for files and video
    stage_cfg: StageConfig = field(default_factory=StageConfig)  # the manual stage's motion and focus limits
    camera_lock: float = 2.0  # picamera2: lock exposure, gain and white balance after this many s (0: never)
    flat_field: Path | None = None  # edge-app calibrate's illumination field, divided out before the finder


@dataclass
class RunSummary:
    slide: str
    store: str
    run_id: int = 0
    frames_read: int = 0  # what the source delivered (unreadable files included)
    frames_done: int = 0  # classified and committed
    resumed: int = 0  # frames the slide already held (an earlier run committed them): skipped undecoded
    leftovers: dict[str, int] = field(default_factory=dict)  # interrupted runs found, orphan crops / .tmp removed
    skipped: Counter = field(default_factory=Counter)  # reason -> frames
    skipped_files: list[dict[str, str]] = field(default_factory=list)  # each skip by name: name, problem, why
    converted: Counter = field(default_factory=Counter)  # grey / RGBA / 16-bit / float -> frames
    cells: int = 0
    per_group: Counter = field(default_factory=Counter)
    stage_ms: Counter = field(default_factory=Counter)  # total ms per stage
    dropped: int = 0  # live frames dropped for latest-frame semantics
    reopened: int = 0  # camera reopens
    crops_warning: str = ""
    stage: str = "fixed"  # manual: settled fields only (edge_app.stage)
    views: Counter = field(default_factory=Counter)  # manual stage: frames per state (moving, out of focus, ...)
    seen_again: int = 0  # manual stage: cells found where a counted cell lies, not counted again
    registered: int = 0  # manual stage: fields re-measured against an earlier field (drift reset)
    stopped_by: str = "end of source"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("skipped", "converted", "per_group", "views"):
            d[k] = dict(getattr(self, k))
        d["stage_ms_mean"] = {k: round(v / max(1, self.frames_done), 2) for k, v in self.stage_ms.items()}
        del d["stage_ms"]
        return d

    @property
    def frames_per_s(self) -> float:
        return self.frames_done / self.seconds if self.seconds > 0 else 0.0


def check_frame(image: Any, min_side: int, max_side: int,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str, str]:
    """(BGR uint8 frame or None, what was converted, why it was skipped)."""
    if image is None:
        return None, "", "no image (None)"
    arr = np.asarray(image)
    if arr.size == 0:
        return None, "", "empty image"
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        return None, "", f"not an image (shape {arr.shape})"
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        return None, "", f"too small ({w}x{h}, under {min_side} px)"
    if max(h, w) > max_side:
        return None, "", f"too large ({w}x{h}, over {max_side} px)"
    if h * w > max_pixels:
        return None, "", f"too large ({w}x{h}, over {max_pixels / 1e6:g} MP)"
    kinds = []
    if arr.dtype == np.uint16:
        kinds.append("16-bit")
    elif arr.dtype != np.uint8:
        kinds.append(str(arr.dtype))
    if arr.ndim == 2 or arr.shape[2] == 1:
        kinds.append("grey")
    elif arr.shape[2] == 4:
        kinds.append("RGBA")
    try:
        return as_bgr_uint8(arr), "+".join(kinds), ""
    except ValueError as exc:
        return None, "", str(exc)


class _SourceWaitInterrupted(Exception):
    """Raised by the first signal while the loop waits for the source: nothing is in flight, stop now."""


class _Stopper:
    """SIGINT/SIGTERM handler: the first asks the loop to finish the frame (or, while it waits for the
    source, stops the wait at once: a source that blocks must not outlive a stop), the second stops now."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.reason = ""
        self.waiting_for_source = False
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.reason:
            raise KeyboardInterrupt(name)
        self.reason = name
        log.warning("%s: finishing the current frame, then closing the store (again to stop at once)", name)
        self.source.stop()
        if self.waiting_for_source:
            raise _SourceWaitInterrupted(name)

    def next_frame(self, frames: Iterator[Frame]) -> Frame | None:
        """The source's next frame, or None at its end or when a signal stops the wait."""
        try:
            self.waiting_for_source = True
            frame = next(frames, None)
            self.waiting_for_source = False
        except _SourceWaitInterrupted:
            self.waiting_for_source = False
            return None
        return frame

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def default_slide_id() -> str:
    return datetime.now().strftime("slide-%Y%m%d-%H%M%S")


def _label(p: Prediction) -> str:
    return f"? {p.class_name[:12]}" if p.unknown else f"{p.class_name[:12]} {p.confidence:.2f}"


def run(opts: AppOptions, on_frame: Callable[[dict[str, Any]], None] | None = None,
        source: FrameSource | None = None) -> RunSummary:
    """Process ``opts.source`` into the store; ``on_frame`` (if given) sees each committed frame.

    ``source`` replaces ``opts.source`` with a source object already made (tests, other front ends).
    """
    slide = check_slide_id(opts.slide or default_slide_id())
    board = resolve_board(opts.board)
    checked = board_check(board)
    if checked["warning"]:
        log.warning("warning: %s", checked["warning"])
    threads = opts.threads if opts.threads is not None else board.threads
    if threads < 1:
        raise CytoEdgeError(f"--threads must be >= 1, got {threads}")
    if opts.max_frames is not None and opts.max_frames < 1:
        raise CytoEdgeError(f"--max-frames must be >= 1, got {opts.max_frames}")
    if opts.max_fps is not None and not opts.max_fps > 0:
        raise CytoEdgeError(f"--max-fps must be > 0, got {opts.max_fps}")
    if opts.stage not in (None, "manual", "fixed"):
        raise CytoEdgeError(f"--stage must be manual or fixed, got {opts.stage!r}")
    clf = Classifier(opts.model, opts.fmt, threads=threads, min_confidence=opts.min_confidence,
                     prefer=board.interpreter, allow_rejected=opts.allow_rejected,
                     trust=opts.trust if opts.trust else board.trust)
    log.info("model %s (%s, %s %s, %d threads) on %s", clf.card.architecture, clf.format, clf.loaded.runtime,
             clf.loaded.version, threads, board.title)
    summary = RunSummary(slide=slide, store=str(opts.out))
    flat = None
    if opts.flat_field is not None:
        from cytoedge.edge_app.flatfield import load

        flat = load(opts.flat_field)
    if source is None:  # opened before the store, so a bad --source leaves no empty store behind
        source = open_source(opts.source or board.camera.source, _camera_settings(opts, board),
                             max_pixels=opts.max_frame_pixels, max_side=opts.max_frame_side)
    summary.stage = opts.stage or ("manual" if source.live else "fixed")
    with source:
        store = Store(opts.out, min_free_mb=opts.min_free_mb, crop_policy=opts.save_crops)
        lock: WriterLock | None = None
        try:
            lock = WriterLock(store.folder)
            summary.leftovers = after_interrupted_runs(store, lock)
            store.open_slide(slide, clf.class_names, clf.groups)
            committed = start_slide(store, slide, rescan=opts.rescan)
            if summary.stage == "fixed":
                source.resume_with(committed.lookup)
            # manual: every frame is decoded (the tracker must see the motion); a field already recorded is not again
            from cytoedge.edge_app.models import remember_model

            summary.run_id = store.start_run(
                slide, source=source.description, model=clf.card.architecture, model_sha256=clf.entry.sha256,
                card_sha256=remember_model(store, opts.model),
                fmt=clf.format, board=board.name, threads=threads,
                settings={"min_confidence": opts.min_confidence, "save_crops": opts.save_crops,
                          "finder": asdict(opts.finder), "rescan": opts.rescan, "board_check": checked,
                          "temperature": clf.temperature, "stage": summary.stage,
                          **({"camera": _jsonable(source.camera_settings)} if source.camera_settings else {}),
                          **({"flat_field": {"file": str(opts.flat_field), **flat.meta}} if flat else {}),
                          **({"stage_limits": asdict(opts.stage_cfg)} if summary.stage == "manual" else {}),
                          "open_set": {"score": clf.open_set.score, "threshold": clf.threshold},
                          # the slide estimate corrects the counts with these (card schema 3; None: an older card)
                          "error_rates": clf.entry.error_rates, "card_schema": clf.card.schema_version})
            display = Display(opts.show, opts.out / "annotated" / slide if opts.save_annotated else None)
            stopper = _Stopper(source)
            stopper.install()
            try:
                _loop(opts, source, clf, store, display, summary, stopper, on_frame, committed, flat)
            finally:
                stopper.restore()
                display.close()
                summary.dropped, summary.reopened = source.stats["dropped"], source.stats["reopened"]
                summary.crops_warning = store.crop_warning
                store.end_run(summary.run_id, summary.to_dict())
        finally:
            store.close()
            if lock is not None:
                lock.release()
    return summary


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else (_jsonable(v) if isinstance(v, dict) else v) for k, v in d.items()}


def _camera_settings(opts: AppOptions, board: BoardProfile) -> CameraSettings:
    w, h = opts.camera_size or (board.camera.width, board.camera.height)
    return CameraSettings(width=w, height=h, fps=board.camera.fps, give_up_after=opts.camera_timeout,
                          controls=board.camera.controls, lock_after=opts.camera_lock)


def _skip_committed(frame: Frame, summary: RunSummary) -> None:
    """A frame the slide already holds: a resumed one is counted, a copy under another name is said."""
    if frame.committed_as == frame.name:
        summary.resumed += 1
        return
    _skipped(summary, frame.name, "duplicate", f"the same frame as {frame.committed_as}, which this slide already holds")


def _skipped(summary: RunSummary, name: str, problem: str, why: str, what: str = "") -> None:
    """Count a skip, keep it by name for the run's record in the store, and say it in one line."""
    summary.skipped[problem] += 1
    summary.skipped_files.append({"name": name, "problem": problem, "why": why})
    log.warning("skipped %s%s: %s", what, name, why)


@dataclass
class _Work:
    """One frame from the reader thread: what the source gave, and for a frame to classify, its cells."""

    frame: Frame
    image: np.ndarray | None = None
    converted: str = ""
    why: str = ""  # why a readable frame is skipped (check_frame)
    dets: list[Detection] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    t: dict[str, float] = field(default_factory=dict)  # ms per stage
    view: StageView | None = None  # manual stage: what the tracker says about this frame
    fld: Field | None = None  # manual stage: the settled field this frame completed (its sharpest frame)
    slide_xy: list[tuple[float, float]] = field(default_factory=list)  # manual stage: each det's slide position
    final: bool = False  # manual stage: the end of the source (the rest in progress may still give a field)

    @property
    def counts(self) -> bool:
        """Is there a frame to classify and record (fixed stage: every good frame; manual: a settled field)?"""
        if self.view is not None or self.final:
            return self.fld is not None
        return self.image is not None and self.frame.committed_as is None


class _FrameLoop:
    """The loop's three steps, each run by one thread (:mod:`edge_app.pipeline`): :meth:`prepare` (reader:
    decode, check, find, cut), :meth:`classify` (main thread), :meth:`commit` (writer: crops, store, log)."""

    def __init__(self, opts: AppOptions, source: FrameSource, clf: Classifier, store: Store, display: Display,
                 summary: RunSummary, stopper: _Stopper, on_frame: Callable[[dict[str, Any]], None] | None,
                 committed: CommittedFrames) -> None:
        self.opts, self.source, self.clf, self.store, self.display = opts, source, clf, store, display
        self.summary, self.stopper, self.on_frame, self.committed = summary, stopper, on_frame, committed
        self.start = self.last_commit = self.last_log = time.perf_counter()
        self.fps = 0.0
        self.seq = store.next_seq(summary.slide)
        self.flat: Any = None  # edge_app.flatfield.FlatField: applied to every frame before the finder
        self.manual = summary.stage == "manual"
        self.tracker = StageTracker(opts.stage_cfg)
        self.counted = CountedCells(opts.stage_cfg.same_cell)
        if self.manual and not source.live:  # a rerun of the same video tracks the same coordinates
            for box in store.slide_cell_boxes(summary.slide):
                self.counted.add(box)

    # -- reader thread ---------------------------------------------------------------------------
    def read(self) -> Iterator[_Work]:
        """The source's frames, each timed from the moment it was asked for."""
        frames = iter(self.source)
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                if self.manual:
                    yield _Work(Frame(None, -1, "(end)"), final=True)
                return
            yield _Work(frame, t={"read": (time.perf_counter() - t0) * 1e3})

    def prepare(self, w: _Work) -> _Work:
        f = w.frame
        if w.final:
            w.fld = self.tracker.finish()
            return self._find_in_field(w)
        if f.committed_as is not None or f.image is None:
            return w
        t0 = time.perf_counter()
        w.image, w.converted, w.why = check_frame(f.image, self.opts.min_frame_side, self.opts.max_frame_side,
                                                  self.opts.max_frame_pixels)
        if w.image is None:
            return w
        if self.flat is not None:
            w.image = self.flat.apply(w.image)
        t1 = time.perf_counter()
        w.t["read"] += (t1 - t0) * 1e3
        if self.manual:
            w.view, w.fld = self.tracker.update(f, w.image)
            w.t["track"] = (time.perf_counter() - t1) * 1e3
            return self._find_in_field(w)
        self.committed.add(f.key, f.name)  # now, so that a copy later in the source is known as one
        w.dets = find_cells(w.image, self.opts.finder)
        w.crops = crops_of(w.image, w.dets)
        w.t["find"] = (time.perf_counter() - t1) * 1e3
        return w

    def _find_in_field(self, w: _Work) -> _Work:
        """Manual stage: the cells of the field this frame completed, less those counted before."""
        fld = w.fld
        if fld is None:
            return w
        if self.committed.lookup(fld.frame.key) is not None:  # a rerun of a video: this field is recorded
            _skip_committed(Frame(None, fld.frame.index, fld.frame.name, committed_as=fld.frame.name), self.summary)
            w.fld = None
            return w
        self.committed.add(fld.frame.key, fld.frame.name)
        t1 = time.perf_counter()
        dets = find_cells(fld.image, self.opts.finder)
        boxes = [(d.box[0] + fld.view.x, d.box[1] + fld.view.y, d.box[2], d.box[3]) for d in dets]
        fresh = self.counted.new_ones(boxes)
        self.summary.seen_again += len(dets) - len(fresh)
        self.summary.registered = self.tracker.registered
        w.dets = [dets[i] for i in fresh]
        w.slide_xy = [boxes[i][:2] for i in fresh]
        w.crops = crops_of(fld.image, w.dets)
        w.t["find"] = (time.perf_counter() - t1) * 1e3
        return w

    # -- main thread -----------------------------------------------------------------------------
    def run(self, reader: Iterator[_Work], writer: InOrderWriter) -> None:
        opts, summary, stopper = self.opts, self.summary, self.stopper
        submitted = 0
        while True:
            t0 = time.perf_counter()
            w = stopper.next_frame(reader)
            if w is None:
                break
            if not w.final:
                summary.frames_read += 1
            if w.view is not None:
                summary.views[w.view.state] += 1
            if w.converted:
                summary.converted[w.converted] += 1
            if not w.counts:
                writer.submit(lambda w=w: self.skip(w))
                if w.view is not None and self.display.active:
                    self.show(w, [], self.seq)
                if w.final:
                    break
                self._pace(t0)
                continue
            t2 = time.perf_counter()
            preds = self.clf.classify(w.crops)
            w.t["classify"] = (time.perf_counter() - t2) * 1e3
            seq, self.seq = self.seq, self.seq + 1
            writer.submit(lambda w=w, preds=preds, seq=seq: self.commit(w, preds, seq))
            submitted += 1
            if self.display.active:
                self.show(w, preds, seq)
            if w.final:
                break
            if stopper.reason:
                summary.stopped_by = stopper.reason
                break
            if opts.max_frames is not None and submitted >= opts.max_frames:
                summary.stopped_by = f"--max-frames {opts.max_frames}"
                break
            self._pace(t0)
        if stopper.reason:
            summary.stopped_by = stopper.reason

    def _pace(self, t0: float) -> None:
        """--max-fps: wait out the rest of this frame's interval (a signal calls source.stop(), which ends it)."""
        if self.opts.max_fps:
            self.source._stop.wait(max(0.0, 1.0 / self.opts.max_fps - (time.perf_counter() - t0)))

    def show(self, w: _Work, preds: list[Prediction], seq: int) -> None:
        t4 = time.perf_counter()
        status = status_line(self.fps, {k: w.t[k] for k in ("find", "classify") if k in w.t}, len(preds), seq + 1)
        image, dets = (w.fld.image, w.dets) if w.fld is not None else (w.image, [])
        if image is None:
            return
        ann = annotate(image, [d.box for d in dets], [_label(p) for p in preds],
                       [p.group for p in preds], status, focus=_focus_of(w))
        if not self.display.update(ann, f"{seq:06d}"):
            self.stopper.reason = self.stopper.reason or "quit key"
        w.t["display"] = (time.perf_counter() - t4) * 1e3

    # -- writer thread ---------------------------------------------------------------------------
    def skip(self, w: _Work) -> None:
        """A frame that is not classified, counted and said in source order."""
        f, summary = w.frame, self.summary
        if w.view is not None or w.final:  # manual stage: a frame in motion, out of focus, settling or counted
            if w.view is None or w.image is None:
                return
            line, now = self._line(w, 0), time.perf_counter()
            if self.on_frame is not None:
                self.on_frame({"seq": None, "name": f.name, "cells": [], "status": line, "timings": w.t,
                               "slide": summary.slide, "image": w.image, "labels": [], "fps": self.fps,
                               "stage": _stage_info(w.view), "committed": False})
            if now - self.last_log >= 2.0:
                log.info("%s: %s", f.name, line)
                self.last_log = now
            return
        if f.committed_as is not None:
            _skip_committed(f, summary)
        elif f.image is None:
            _skipped(summary, f.name, f.problem, f.error)
        else:
            _skipped(summary, f.name, w.why.split(" (")[0], w.why, "frame ")

    def commit(self, w: _Work, preds: list[Prediction], seq: int) -> None:
        """Store the frame (its crops fsynced first, then one transaction), then say so."""
        summary, f, t, image = self.summary, w.frame, w.t, w.image
        place = None
        if w.fld is not None:  # manual stage: the field's sharpest frame, at its place on the slide
            f, image, v = w.fld.frame, w.fld.image, w.fld.view
            place = FieldPlace(v.x, v.y, v.focus)
        t3 = time.perf_counter()
        cells = [CellResult(d.box, p.class_name, p.group, p.confidence, p.score, p.unknown, p.p_abnormal,
                            w.slide_xy[i] if w.slide_xy else None)
                 for i, (d, p) in enumerate(zip(w.dets, preds))]
        self.store.add_frame(summary.slide, summary.run_id, name=f.name, size=(image.shape[1], image.shape[0]),
                             cells=cells, crops=w.crops, timings=t, seq=seq, key=f.key, place=place)
        now = time.perf_counter()
        t["store"] = (now - t3) * 1e3
        summary.frames_done += 1
        summary.cells += len(cells)
        summary.per_group.update(c.group for c in cells)
        frame_s, self.last_commit = now - self.last_commit, now
        self.fps = 1.0 / max(frame_s, 1e-6) if self.fps == 0.0 else 0.8 * self.fps + 0.2 / max(frame_s, 1e-6)
        status = self._line(w, len(cells), seq)
        for k, v in t.items():
            summary.stage_ms[k] += v
        if self.on_frame is not None:  # the web view keeps a reference to image: it is not reused after this
            info = {"seq": seq, "name": f.name, "cells": cells, "status": status, "timings": t,
                    "slide": summary.slide, "image": image, "labels": [_label(p) for p in preds],
                    "fps": self.fps, "committed": True}
            if w.fld is not None:
                info["stage"] = {**_stage_info(w.fld.view), "state": "counted", "place": place}
            self.on_frame(info)
        if not (self.source.live or self.manual) or now - self.last_log >= 2.0 or w.fld is not None:
            groups = Counter(c.group for c in cells)
            log.info("%s: %s | %s", f.name, ", ".join(f"{g} {n}" for g, n in sorted(groups.items())) or "no cells",
                     status)
            self.last_log = now
        summary.seconds = now - self.start

    def _line(self, w: _Work, n_cells: int, seq: int | None = None) -> str:
        """The status line: frame, frames/s, stage times, cells; with a manual stage the focus bar and state."""
        times = {k: w.t[k] for k in ("track", "find", "classify", "store") if k in w.t}
        line = status_line(self.fps, times, n_cells, (self.seq if seq is None else seq) + 1)
        view = w.fld.view if w.fld is not None and w.view is None else w.view
        if view is None:
            return line
        state = "counted" if w.fld is not None else view.state
        return f"{line} | {focus_bar(view.focus_share)} {state}"


def _stage_info(v: StageView) -> dict[str, Any]:
    return {"state": v.state, "focus": round(v.focus, 2), "threshold": round(v.threshold, 2),
            "focus_share": round(v.focus_share, 3), "x": round(v.x, 1), "y": round(v.y, 1)}


def _focus_of(w: _Work) -> tuple[float, str] | None:
    """(focus share, state) for the annotated frame's bar, or None with a fixed stage."""
    if w.fld is not None:
        return w.fld.view.focus_share, "counted"
    return None if w.view is None else (w.view.focus_share, w.view.state)


def _loop(opts: AppOptions, source: FrameSource, clf: Classifier, store: Store, display: Display,
          summary: RunSummary, stopper: _Stopper, on_frame: Callable[[dict[str, Any]], None] | None,
          committed: CommittedFrames, flat: Any = None) -> None:
    """Frames through the three threads (:mod:`edge_app.pipeline`) until the source ends or a stop.

    A second signal (KeyboardInterrupt) drops the frames not yet stored (the one being committed
    finishes: a frame commits whole or not at all); any other end stores every classified frame first.
    """
    loop = _FrameLoop(opts, source, clf, store, display, summary, stopper, on_frame, committed)
    loop.flat = flat
    reader = Prefetcher(loop.read(), loop.prepare)
    writer = InOrderWriter(depth=2)
    try:
        loop.run(reader, writer)
    except BaseException as exc:
        source.stop()  # the reader's source ends at its next frame
        reader.close()
        try:
            writer.close(drain=not isinstance(exc, KeyboardInterrupt))
        except Exception as err:  # noqa: BLE001 - the first error is the one raised
            if err is not exc:
                log.warning("while stopping, a classified frame could not be stored: %s", err)
        raise
    else:
        source.stop()
        reader.close()
        writer.close()
    finally:
        summary.seconds = time.perf_counter() - loop.start
