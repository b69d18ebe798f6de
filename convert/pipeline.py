"""``convert_bundle``: checkpoint bundle -> ONNX -> TFLite fp32 (+ calibrated int8) -> validation -> model card.

>>> from cytoedge.convert.pipeline import ConvertOptions
>>> opts = ConvertOptions(int8=True)
>>> opts.calib_count(1000), opts.calib_count(120)
(200, 120)
>>> ConvertOptions(int8=True, calib_images=300).calib_count(120)  # asked for: checked, never lowered
300
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.convert.calibration import DEFAULT_CALIB_IMAGES, SPACES, select_calibration, write_calibration, write_sample_file
from cytoedge.convert.errors import AccuracyGateError, ConvertError, StageError
from cytoedge.edge_app.atomic import atomic_write_bytes
from cytoedge.edge_app.card import CARD_FILE, ModelCard, write_card
from cytoedge.edge_app.formats import FORMATS, get_format

VIEWS = ("finder", "dataset")
FINDER_CELL_REJECTION, DATASET_CELL_REJECTION = 0.02, 0.05


@dataclass
class ConvertOptions:
    """Everything ``edge-convert`` can be told; the CLI maps its flags onto this once."""

    int8: bool = False  # also write the full-integer model, calibrated on the bundle's training images
    calib_images: int | None = None  # calibration images, stratified over classes; None: 200, or all when fewer
    val_data: Path | None = None  # validate on this data folder instead of the bundle's validation split
    max_drop: float = 1.0  # accuracy points an artifact may lose against PyTorch before it is rejected
    tflite_input: str = "pixels"  # TFLite input: "pixels" (0..255, normalisation inside) or "normalized"
    # pixels: fold mean/std into the first convolution instead of a layer (measured:
    # docs/conversion.md#int8-input-pixels-normalisation-folded-in-decided-and-measured)
    fold_normalization: bool = False
    dynamic_batch: bool = True  # TFLite with a resizable batch, so the device classifies a frame's crops at once
    max_batch: int = 32  # crops per invocation checked at conversion and recorded in the card
    fit_images: int | None = None  # training images for each artifact's open-set score (None: all)
    # edge_app.rejection.SCORES; chosen by benchmarks.open_set:
    # docs/open-set.md#rejecting-what-is-not-a-cell-and-calibrated-confidence
    open_set_score: str = "mahalanobis+image"
    cell_rejection: float | None = None  # share of validation cells the open-set threshold rejects (None: 0.02 on
    # finder crops, 0.05 on dataset crops; docs/open-set.md: measured on fields of an unseen seed)
    view: str = "finder"  # fit the open-set score, its threshold, the temperature and the error rates on "finder"
    # crops (the device's own finder on the bundle's labelled frames, validation groups only: the device view) or
    # on the split's "dataset" crops (the releases before; for data without labelled frames)
    threads: int | None = None  # interpreter threads during validation (None: all cores)
    keep_work: bool = False  # keep the work folder (ONNX sources, onnx2tf output, calibration array)
    seed: int = 0  # picks the stratified calibration / fitting subsets

    @property
    def rejection(self) -> float:
        """The share of validation cells the open-set threshold rejects (the view's default unless set)."""
        if self.cell_rejection is not None:
            return self.cell_rejection
        return FINDER_CELL_REJECTION if self.view == "finder" else DATASET_CELL_REJECTION

    def calib_count(self, available: int) -> int:
        """How many calibration images to use: the number asked for, else the default capped by the split."""
        return self.calib_images if self.calib_images is not None else min(DEFAULT_CALIB_IMAGES, available)

    def check(self) -> None:
        if self.tflite_input not in SPACES:
            raise ConvertError(f"--tflite-input {self.tflite_input!r} is not one of {', '.join(SPACES)}")
        if not math.isfinite(self.max_drop):
            raise ConvertError(f"--max-drop must be a finite number of accuracy points, got {self.max_drop}")
        if self.max_batch < 1:
            raise ConvertError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.fit_images is not None and self.fit_images < 1:
            raise ConvertError(f"--fit-images must be at least 1, got {self.fit_images}")
        from cytoedge.edge_app.rejection import SCORES

        if self.open_set_score not in SCORES:
            raise ConvertError(f"--open-set-score {self.open_set_score!r} is not one of {', '.join(SCORES)}")
        if self.view not in VIEWS:
            raise ConvertError(f"--view {self.view!r} is not one of {', '.join(VIEWS)}")
        if not 0.0 < self.rejection < 0.5:
            raise ConvertError(f"--cell-rejection must be between 0 and 0.5 (a share of cells), got {self.cell_rejection}")
        if self.val_data is not None and not Path(self.val_data).is_dir():
            raise ConvertError(f"--val {self.val_data} is not a folder: pass a SIPaKMeD or ImageFolder tree")


class Stages:
    """Times each stage and prints one line per stage: name, time, what it wrote (STYLE.md 7)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.times = log, {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[list[str]]:
        notes: list[str] = []
        t0 = time.perf_counter()
        try:
            yield notes
        except BaseException:
            self.log(f"  {name:<10} failed after {time.perf_counter() - t0:.1f} s")
            raise
        self.times[name] = round(time.perf_counter() - t0, 2)
        self.log(f"  {name:<10} {self.times[name]:6.1f} s  {'; '.join(notes)}")


def _mb(path: Path, name: str = "") -> str:
    """``NAME 1.23 MB``: ``name`` is the file's name in the model folder when that differs from ``path``'s."""
    return f"{name or path.name} {path.stat().st_size / 1e6:.2f} MB"


def _prepare_out(out: Path) -> Path:
    """Make ``out``; remove our previous card and artifacts first so a half-finished folder has no card."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file: pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in [CARD_FILE, CARD_FILE + ".sig", *(f.file for f in FORMATS.values())]:  # .sig: an old signature
        (out / name).unlink(missing_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return work


def _refuse_dead_model(net: Any, x: Any, bundle_dir: Path) -> None:
    """A model that gives every image the same scores cannot be calibrated (a zero int8 range): say so first."""
    import torch

    from cytoedge.train.metrics import same_scores_for_every_image

    with torch.no_grad():
        logits = net(torch.from_numpy(x))[0].numpy()
    if same_scores_for_every_image(logits):
        raise ConvertError(f"the model in {bundle_dir} gives every image the same scores (dead units, e.g. SqueezeNet "
                           f"trained from scratch with too high a learning rate): retrain it; there is nothing to convert")


def convert_bundle(bundle_dir: str | Path, out_dir: str | Path, opts: ConvertOptions | None = None,
                   log: Callable[[str], None] = print) -> ModelCard:
    """Convert one checkpoint bundle into ``out_dir``; returns the written card.

    Raises :class:`~convert.errors.AccuracyGateError` (exit code 3) after writing the card
    when an artifact fails the accuracy gate; other problems raise a typed
    :class:`~convert.errors.ConvertError` (or the bundle's ``BundleError``) before anything is written.

    The stages, one function each: choose the images, read, ONNX, calibrate (int8), TFLite,
    validate (every artifact scored the same way), the card.
    """
    from cytoedge.convert import card_writer as cw
    from cytoedge.convert.tflite import LOG_FILE, run_onnx2tf
    from cytoedge.train.bundle import read_bundle

    opts = opts or ConvertOptions()
    opts.check()
    bundle = read_bundle(bundle_dir)
    spec, k = bundle.preprocessing, bundle.num_classes
    images = _choose_images(bundle, opts)

    out = Path(out_dir).resolve()
    work = _prepare_out(out)
    stage = Stages(log)
    created = cw.now_iso()
    log(f"edge-convert: {bundle.architecture} ({k} classes, {spec.size}x{spec.size}) from {bundle.directory} -> {out}")

    net = _read(stage, bundle, images)
    source = cw.source_record(bundle)
    exported = _export(stage, net, bundle, source, created, opts, images.val_crops, work)
    calibration = _calibrate(stage, bundle, opts, images, exported.in_shape, work)

    with stage("tflite") as note:
        tfl = run_onnx2tf(exported.tflite_source, work, calibration)
        note.append(", ".join(_mb(p, get_format(fmt).file) for fmt, p in tfl.items())
                    + f" (log: {out / 'logs' / LOG_FILE})")  # copied there at the end

    # artifacts into the model folder (atomic per file), the bundle copy for the torch row
    produced = {"onnx": exported.onnx, **tfl}
    for fmt, src in produced.items():
        atomic_write_bytes(out / get_format(fmt).file, src.read_bytes())
    cw.copy_bundle(bundle, out)

    checked = _validate(stage, net, bundle, opts, images, list(tfl), out, work)
    plot = _log_table(log, checked.scores, out)

    artifacts = {fmt: cw.artifact_entry(fmt, out, *checked.specs[fmt], checked.scores[fmt]) for fmt in
                 [f for f in FORMATS if f in checked.scores]}
    validation = _validation_record(opts, images, checked, calibration, exported.normalization, plot, stage.times)
    card = cw.build_card(bundle, artifacts, source, validation, created)
    card_file = write_card(card, out)
    card.directory = out
    _finish_work(work, out, opts.keep_work)
    total = sum(stage.times.values())
    log(f"  wrote {card_file} ({len(artifacts)} artifacts) in {total:.1f} s")
    if checked.rejected:
        raise AccuracyGateError(f"{'; '.join(checked.rejected)}; the card marks it rejected: calibrate with more "
                                "images (--calib-images) or deploy tflite-fp32", card)
    return card


@dataclass
class _Images:
    """The bundle's images each stage uses, chosen once: validation, open-set fitting, int8 calibration."""

    val: Any  # convert.samples image sets
    fit: Any
    calib: Any | None  # None: no --int8
    val_crops: Any = None  # the crops, as the device prepares them (the "read" stage loads them)
    fit_crops: Any = None
    calib_crops: Any = None
    view: Any = None  # _DeviceView: the bundle's labelled frames through the finder (None: --view dataset)
    non_cells: Any = None  # the validation frames' unmatched detections, as the device prepares them


def _choose_images(bundle: Any, opts: ConvertOptions) -> _Images:
    from cytoedge.convert import samples

    k, names = bundle.num_classes, bundle.class_names
    split = bundle.read_split()
    train = samples.split_images(split, "train", k)
    val = samples.folder_images(Path(opts.val_data), names) if opts.val_data else samples.split_images(split, "val", k)
    calib_set = select_calibration(train, opts.calib_count(len(train)), k, opts.seed) if opts.int8 else None
    fit = train if opts.fit_images is None else samples.stratified(train, min(opts.fit_images, len(train)), k, opts.seed)
    view = _device_view(split, opts, names) if opts.view == "finder" else None
    return _Images(val, fit, calib_set, view=view)


def _read(stage: Stages, bundle: Any, images: _Images) -> Any:
    """The "read" stage: the PyTorch model, and the crops of every image set; returns the model."""
    from cytoedge.convert import samples

    spec = bundle.preprocessing
    with stage("read") as note:
        net = bundle.load_model()
        if images.view is not None:
            images.val, images.fit, images.val_crops, images.fit_crops, images.non_cells = images.view.sets(spec)
            note.append(f"device view: validation {images.view.val.summary()}; training {images.view.train.summary()}")
        else:
            images.val_crops = samples.load_crops(images.val, spec)
            images.fit_crops = samples.load_crops(images.fit, spec)
        images.calib_crops = samples.load_crops(images.calib, spec) if images.calib is not None else None
        note.append(f"{len(images.val)} validation images ({images.val.source}), {len(images.fit)} training images "
                    "for the open-set score"
                    + (f", {len(images.calib)} for calibration" if images.calib is not None else ""))
    return net


@dataclass
class _Export:
    onnx: Path  # model.onnx (normalised input, batch 1): the ONNX artifact
    tflite_source: Path  # what onnx2tf converts (the TFLite input space, batch-dynamic)
    in_shape: list[Any]  # its input shape (NCHW; a name for a dynamic batch)
    normalization: str  # how the TFLite files normalise, in words


def _export(stage: Stages, net: Any, bundle: Any, source: dict[str, Any], created: str, opts: ConvertOptions,
            val_crops: Any, work: Path) -> _Export:
    """The "onnx" stage: model.onnx, checked against PyTorch, and the TFLite source when it differs."""
    from cytoedge.convert import card_writer as cw
    from cytoedge.convert.onnx_export import compare_with_torch, export_module, export_onnx
    from cytoedge.convert.runners import normalized

    spec = bundle.preprocessing
    with stage("onnx") as note:
        onnx_path = work / "model.onnx"
        export_onnx(net, spec, onnx_path, space="normalized", dynamic_batch=False,
                    metadata=cw.onnx_metadata(bundle, source, "normalized", created))
        probe = normalized(val_crops[:2], spec).transpose(0, 3, 1, 2).copy()
        err = compare_with_torch(net, onnx_path, probe)
        _refuse_dead_model(net, normalized(val_crops[:16], spec).transpose(0, 3, 1, 2).copy(), bundle.directory)
        note.append(f"{_mb(onnx_path)}, ONNX Runtime vs PyTorch max diff {err:.2g}")
        tfl_src = onnx_path
        if opts.tflite_input != "normalized" or opts.dynamic_batch:
            tfl_src = work / "tflite_source.onnx"
            module = export_module(net, spec, opts.tflite_input, fold=opts.fold_normalization)
            in_shape = export_onnx(net, spec, tfl_src, space=opts.tflite_input, dynamic_batch=opts.dynamic_batch,
                                   metadata=cw.onnx_metadata(bundle, source, opts.tflite_input, created), module=module)
            src_probe = val_crops[:2].astype("float32").transpose(0, 3, 1, 2).copy() \
                if opts.tflite_input == "pixels" else probe
            compare_with_torch(module, tfl_src, src_probe)
            normalization = _normalization(opts.tflite_input, module.folded_into)
            note.append(f"TFLite source: {opts.tflite_input} input ({normalization}), "
                        + ("batch-dynamic" if isinstance(in_shape[0], str) else f"batch {in_shape[0]}"))
        else:
            in_shape = [1, 3, spec.size, spec.size]
            normalization = _normalization(opts.tflite_input, "")
    return _Export(onnx_path, tfl_src, in_shape, normalization)


def _calibrate(stage: Stages, bundle: Any, opts: ConvertOptions, images: _Images, in_shape: list[Any],
               work: Path) -> Any:
    """The "calibrate" stage (``--int8``): the calibration array; and the sample file onnx2tf reads in any case."""
    calibration = None
    if images.calib_crops is not None:
        with stage("calibrate") as note:
            calibration = write_calibration(images.calib_crops, images.calib, bundle.class_names, bundle.preprocessing,
                                            opts.tflite_input, [1, *in_shape[1:]], work)
            per = ", ".join(str(c) for c in calibration.record["per_class"].values())
            note.append(f"{calibration.path.name}: {calibration.count} training images ({per} per class)")
    write_sample_file(images.calib_crops if images.calib_crops is not None else images.fit_crops, work)
    return calibration


@dataclass
class _Checked:
    scores: dict[str, Any]  # format -> convert.validate.ArtifactScore
    specs: dict[str, tuple[Any, Any, int]]  # format -> (input, outputs, max batch) for the card
    batching: dict[str, dict[str, Any]]  # format -> what the batch check found
    rejected: list[str]  # the accuracy gate's verdicts
    fitting: Any  # convert.validate.FitSettings


def _validate(stage: Stages, net: Any, bundle: Any, opts: ConvertOptions, images: _Images, tflite_formats: list[str],
              out: Path, work: Path) -> _Checked:
    """The "validate" stage: PyTorch, then every artifact, scored the same way against PyTorch's logits."""
    from cytoedge.convert import card_writer as cw
    from cytoedge.convert.runners import OnnxRunner, TorchRunner
    from cytoedge.convert.validate import FitSettings, apply_gate, score
    from cytoedge.edge_app.crop_features import SMALL, crop_features

    spec, k = bundle.preprocessing, bundle.num_classes
    threads = opts.threads or os.cpu_count() or 1
    fitting = FitSettings(score=opts.open_set_score, cell_rejection=opts.rejection, image_size=SMALL)
    image = (crop_features(images.val_crops, SMALL), crop_features(images.fit_crops, SMALL)) \
        if "image" in fitting.score else None
    non_cells = images.non_cells
    non_cell_args = None if non_cells is None or not len(non_cells) else \
        (non_cells, crop_features(non_cells, SMALL) if image is not None else None)
    batching: dict[str, dict[str, Any]] = {}

    def runners() -> Iterator[tuple[str, Any, tuple[Any, Any, int]]]:
        """(format, runner, card specs) in the order they are scored; the LiteRT ones built when their turn comes."""
        yield "torch", TorchRunner(net, spec), (*cw.torch_like_specs(bundle, -1), opts.max_batch)
        yield "onnx", OnnxRunner(out / get_format("onnx").file, spec, threads), (*cw.torch_like_specs(bundle, 1), 1)
        for fmt in tflite_formats:
            runner = _litert_runner(out / get_format(fmt).file, work, spec, k, bundle.embedding_dim,
                                    opts.tflite_input, threads, opts.max_batch)
            runner.batch = _checked_batch(runner, fmt, images.val_crops, opts.max_batch, batching)
            yield fmt, runner, (runner.input, runner.outputs, runner.batch)

    scores, specs = {}, {}
    with stage("validate") as note:
        reference = None  # PyTorch's validation logits, once scored
        for fmt, runner, card_specs in runners():
            scores[fmt] = score(fmt, runner, images.val_crops, images.val.labels, images.fit_crops, images.fit.labels,
                                k, fitting, reference, class_names=bundle.class_names,
                                groups=bundle.class_groups or None, image=image, non_cells=non_cell_args,
                                view=opts.view)
            specs[fmt] = card_specs
            if reference is None:
                reference = scores[fmt].logits
        rejected = apply_gate(scores, opts.max_drop)
        note.append(f"{len(images.val)} images x {len(scores)} artifacts")
    return _Checked(scores, specs, batching, rejected, fitting)


def _checked_batch(runner: Any, fmt: str, val_crops: Any, max_batch: int, batching: dict[str, dict[str, Any]]) -> int:
    """The batch a batch-dynamic TFLite file may run at: ``max_batch`` when batching changes its outputs by at
    most one output step, else 1 (recorded in ``batching``)."""
    from cytoedge.convert.runners import batch_difference

    if not (runner.dynamic and max_batch > 1):
        return 1
    probe_n = min(len(val_crops), max_batch)
    diff = batch_difference(runner, val_crops[:probe_n], probe_n)
    allowed = max_batch if diff <= 1.0 else 1
    batching[fmt] = {"dynamic": True, "checked_batch": probe_n, "max_difference_in_output_steps": diff,
                     "max_batch": allowed}
    return allowed


def _log_table(log: Callable[[str], None], scores: dict[str, Any], out: Path) -> Path | None:
    """The validation table and the reliability diagrams; returns the plot's path (None: not drawn)."""
    from cytoedge.convert import card_writer as cw
    from cytoedge.convert.validate import format_table

    log("")
    for line in format_table(scores, reliability_of="tflite-int8" if "tflite-int8" in scores else "tflite-fp32").splitlines():
        log("  " + line)
    plot = cw.reliability_plot({f: s.calibration for f, s in scores.items()}, out)
    log(f"  reliability diagrams: {plot}" if plot else "  reliability diagrams: not drawn (matplotlib missing)")
    log("")
    return plot


def _validation_record(opts: ConvertOptions, images: _Images, checked: _Checked, calibration: Any,
                       normalization: str, plot: Path | None, times: dict[str, float]) -> dict[str, Any]:
    """The card's ``validation`` section."""
    val, fit, fitting = images.val, images.fit, checked.fitting
    return {
        "data": val.source,
        "n_images": len(val),
        "fit": {"source": fit.source, "images": len(fit), "open_set_score": fitting.score,
                "cell_rejection": fitting.cell_rejection, "rank": fitting.rank, "image_size": fitting.image_size,
                "threshold_on": val.source, "temperature_on": val.source, "error_rates_on": val.source,
                "view": opts.view, **({"device_view": images.view.record()} if images.view is not None else {})},
        "reliability_plot": plot.name if plot else None,
        "reference": "torch",
        "table": {fmt: s.metrics for fmt, s in checked.scores.items()},
        "calibration": calibration.record if calibration else None,
        "gate": {"max_drop_points": opts.max_drop, "rejected": checked.rejected},
        "batching": checked.batching,
        "tflite_input": opts.tflite_input,
        "normalization": normalization,
        "timings_s": dict(times),
        "options": {k_: (str(v) if isinstance(v, Path) else v) for k_, v in asdict(opts).items()},
    }


@dataclass
class _DeviceView:
    """The bundle's labelled frames through the device's finder (:mod:`train.data.device_view`)."""

    train: Any  # FinderCrops of the training groups' frames: the open-set score's parameters
    val: Any  # FinderCrops of the validation groups' frames: threshold, temperature, error rates
    source: str

    def sets(self, spec: Any) -> tuple[Any, Any, Any, Any, Any]:
        """(val ImageSet, fit ImageSet, val crops, fit crops, the validation frames' non-cell crops), as the model sees them."""
        from cytoedge.convert.samples import ImageSet
        from cytoedge.edge_app.preprocess import preprocess

        def prep(crops: list, idx: Any) -> Any:
            out = np.empty((len(idx), spec.size, spec.size, 3), np.uint8)
            for n, i in enumerate(idx):
                out[n] = preprocess(crops[i], spec, channel_order="BGR", normalize=False)
            return out

        v, t = self.val.matched, self.train.matched
        val = ImageSet(f"finder crops of the validation frames ({self.source})",
                       [Path(self.val.groups[i]) for i in v], self.val.label_array[v])
        fit = ImageSet(f"finder crops of the training frames ({self.source})",
                       [Path(self.train.groups[i]) for i in t], self.train.label_array[t])
        return val, fit, prep(self.val.crops, v), prep(self.train.crops, t), prep(self.val.crops, self.val.non_cells)

    def record(self) -> dict[str, Any]:
        def part(fc: Any) -> dict[str, Any]:
            return {"frames": fc.frames, "outlined_cells": fc.outlines, "matched": int(len(fc.matched)),
                    "other_detections": int(len(fc.non_cells))}
        return {"source": self.source, "match_iou": 0.5, "validation": part(self.val), "training": part(self.train)}


def _device_view(split: dict, opts: ConvertOptions, names: list[str]) -> _DeviceView:
    """The labelled frames of the bundle's data (or ``--val DATA``: all of its frames for validation), group-aware."""
    from cytoedge.train.data.device_view import cluster_frames, finder_crops, frames_of_groups
    from cytoedge.train.errors import DataError

    root = Path(split.get("root", ""))
    hint = "pass --view dataset to fit on the dataset's crops instead"
    try:
        frames = cluster_frames(root) if root.is_dir() else []
        groups = {part: {str(r[2]) for r in split.get(part) or []} for part in ("train", "val")}
        # a frame whose crops are on both sides (a bundle trained with --no-groups) is validation only
        train_frames = frames_of_groups(frames, groups["train"] - groups["val"])
        val_frames = cluster_frames(Path(opts.val_data)) if opts.val_data else frames_of_groups(frames, groups["val"])
        if not train_frames or not val_frames:
            which = "training" if not train_frames else "validation"
            raise ConvertError(f"the device view needs labelled frames (cluster images with NNN_cytNN.dat outlines) of "
                               f"the {which} groups; {root if which == 'training' or not opts.val_data else opts.val_data}"
                               f" has none: {hint}")
        view = _DeviceView(finder_crops(train_frames, names), finder_crops(val_frames, names),
                           str(opts.val_data or root))
    except DataError as exc:
        raise ConvertError(f"device view: {exc}; {hint}") from None
    for part, fc in (("training", view.train), ("validation", view.val)):
        counts = np.bincount(fc.label_array[fc.matched], minlength=len(names))
        if (counts == 0).any():
            missing = names[int(np.flatnonzero(counts == 0)[0])]
            raise ConvertError(f"device view: the finder matched no {missing} cell in the {part} frames "
                               f"({fc.summary()}): {hint}")
    return view


def _normalization(space: str, folded_into: str) -> str:
    """How the TFLite files normalise, in words (the card's ``validation.normalization``)."""
    if space != "pixels":
        return "before the model (normalized input)"
    return f"folded into {folded_into}" if folded_into else "a layer before the network"


def _litert_runner(path: Path, work: Path, spec: Any, num_classes: int, embedding_dim: int, space: str,
                   threads: int, batch: int) -> Any:
    """A TfliteRunner, built with LiteRT's console line sent to the log; a file it cannot run is a StageError."""
    from cytoedge.convert.runners import TfliteRunner
    from cytoedge.convert.tflite import LOG_FILE, captured_output

    try:
        with captured_output(work / LOG_FILE):
            return TfliteRunner(path, spec, num_classes, embedding_dim, space, threads, batch=batch)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError("validate", f"{path.name} does not run in the LiteRT interpreter: {first}",
                         work / LOG_FILE) from None


def _finish_work(work: Path, out: Path, keep: bool) -> None:
    """Keep onnx2tf's log beside the card; drop the work folder unless asked to keep it."""
    from cytoedge.convert.tflite import LOG_FILE

    if (work / LOG_FILE).is_file():
        (out / "logs").mkdir(exist_ok=True)
        shutil.copyfile(work / LOG_FILE, out / "logs" / LOG_FILE)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["ConvertOptions", "convert_bundle"]
