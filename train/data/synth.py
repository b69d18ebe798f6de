"""``edge-train synth``: a synthetic stand-in for SIPaKMeD, written as the same tree.

No data set can be downloaded on the machines this project is built on, so the
reader, the trainer, the cell finder and the demo run on this instead::

    OUT/
      synth.json                          how it was made (marks the tree as synthetic)
      im_Parabasal/                       one folder per class (edge_app.classes.SIPAKMED_FOLDERS)
        001.bmp  002.bmp ...              cluster frames, mainly cells of this class
        001_cyt01.dat  001_nuc01.dat ...  outline of every labelled cell (x,y per line, frame pixels)
        CROPPED/
          001_01.bmp                      single-cell crops cut from the frames
          001_01_cyt.dat  001_01_nuc.dat  outlines in crop pixels
      ...
      fields/                             with --fields K: mixed-class slide fields (no CROPPED/)
        field_001.png  field_001_cyt01.dat  field_001_nuc01.dat ...
        truth.json                        per field: every cell's class, box and outline files
      negatives/                          non-cell crops training may use: debris/, fibre/, background/, blur/, noise/
      ood/                                non-cell TEST crops of other kinds, another seed: stain_blob/, bubble/,
                                          out_of_focus/, clump/, black/, white/ (both: --non-cells N per kind)

Crops are cut from the frames (``001_03.bmp`` is cell 3 of frame ``001.bmp`` with a
margin, neighbours included), so crops that share a prefix form a real group.
Class frames may also hold a few unlabelled cells of other classes (bystanders)
and always hold unlabelled debris and inflammatory cells; the fields label every
cell and list the inflammatory cells as distractors in ``truth.json``. ``negatives/`` and
``ood/`` (:mod:`train.data.synth_noncells`) each hold a ``noncell.json`` marker: the
data-set reader never takes them as classes.

The same options and seed give byte-identical files. The tree is built in a
hidden staging folder inside ``OUT`` and moved into place when complete;
``synth.json`` is written last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.clitools import Parser
from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_FOLDERS
from cytoedge.edge_app.outlines import format_outline, outline_bbox
from cytoedge.train.data.synth_lab import LABS, LabStyle, lab_style
from cytoedge.train.errors import ConfigError, DataError

MARKER = "synth.json"
GENERATOR = "cytoedge-synth"
GENERATOR_VERSION = 1  # bump when the same seed no longer gives the same pictures
FIELDS_DIR = "fields"
STAGING_PREFIX = ".synth-staging-"
# calibrated: CE ShuffleNetV2 from random init ~82 % (0.3: 92 %, 0.5: 75-78 %);
# docs/synthetic-data.md#the-synthetic-data-what-it-is-and-is-not
DEFAULT_DIFFICULTY = 0.45
MIN_FRAME = 256
# Fields of one slide: mostly normal cells, as in a screening slide (class -> share).
FIELD_MIX: dict[str, float] = {
    "superficial_intermediate": 0.35, "parabasal": 0.15, "metaplastic": 0.2,
    "koilocytotic": 0.15, "dyskeratotic": 0.15,
}
FRAME_COVERAGE = 0.55  # at most this share of a frame is covered by its cells (on average)
FIELD_COVERAGE = 0.25  # slide fields are sparser
BYSTANDER_RATE = 0.5  # mean unlabelled other-class cells per class frame


@dataclass
class SynthOptions:
    """What to generate. Every field maps onto one ``edge-train synth`` option."""

    out: Path  # the folder to write the tree into (created; empty, or a previous synthetic tree)
    per_class: int = 200  # single-cell crops per class (SIPaKMeD has ~800)
    frames: int = 8  # cluster frames per class; crops are spread evenly over them
    seed: int = 0  # same seed and options -> byte-identical files
    difficulty: float = DEFAULT_DIFFICULTY  # 0 = classes barely overlap ... 1 = heavy overlap, more blur/noise
    fields: int = 0  # extra mixed-class slide fields under OUT/fields/
    non_cells: int = 40  # non-cell crops per kind under OUT/negatives/ and OUT/ood/ (0: none)
    frame_size: tuple[int, int] = (1280, 960)  # (width, height) of frames and fields, pixels
    lab: str = "a"  # whose stain, camera and microscope (train.data.synth_lab.LABS); "a": the generator as it was

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.frame_size = (int(self.frame_size[0]), int(self.frame_size[1]))

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an option out of range."""
        if self.per_class < 1:
            raise ConfigError(f"--per-class must be at least 1, got {self.per_class}")
        if not 1 <= self.frames <= self.per_class:
            raise ConfigError(f"--frames must be between 1 and --per-class ({self.per_class}) so every "
                              f"frame holds a cell, got {self.frames}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ConfigError(f"--difficulty must be between 0 and 1, got {self.difficulty}")
        if self.fields < 0:
            raise ConfigError(f"--fields must be 0 or more, got {self.fields}")
        if self.non_cells < 0:
            raise ConfigError(f"--non-cells must be 0 or more, got {self.non_cells}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")
        lab_style(self.lab)
        w, h = self.frame_size
        if min(w, h) < MIN_FRAME:
            raise ConfigError(f"--frame-size must be at least {MIN_FRAME}x{MIN_FRAME}, got {w}x{h}")
        per_frame = -(-self.per_class // self.frames)
        for cls in SIPAKMED_CLASSES:
            fit = _capacity(cls, self.frame_size)
            if per_frame > fit:
                need = -(-self.per_class // fit)
                raise ConfigError(f"{per_frame} {cls} cells do not fit one {w}x{h} frame (at most {fit}): "
                                  f"use --frames {need} or more")


@dataclass
class SynthSummary:
    """What :func:`generate` wrote."""

    out: Path
    crops: dict[str, int]  # class -> crops written
    frames: dict[str, int]  # class -> cluster frames written
    fields: int  # slide fields written
    field_cells: int  # labelled cells over all fields
    non_cells: dict[str, int]  # set (negatives, ood) -> non-cell crops written
    seconds: float
    options: dict = field(default_factory=dict)

    def line(self) -> str:
        o = self.options
        fields = f" + {self.fields} fields ({self.field_cells} cells)" if self.fields else ""
        non = (" + non-cell crops: " + ", ".join(f"{n} in {k}/" for k, n in self.non_cells.items())
               if self.non_cells else "")
        return (f"synth: wrote {sum(self.crops.values())} crops ({len(self.crops)} classes) from "
                f"{sum(self.frames.values())} frames{fields}{non} to {self.out} "
                f"(difficulty {o.get('difficulty')}, seed {o.get('seed')}) in {self.seconds:.1f} s")


def _capacity(cls: str, size: tuple[int, int]) -> int:
    from cytoedge.train.data.synth_morphology import mean_area

    return max(1, int(FRAME_COVERAGE * size[0] * size[1] / mean_area(cls)))


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, what, index): a frame's pixels do not depend on the others."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(GENERATOR_VERSION, *key)))


# --- the output folder ---------------------------------------------------------------------

def _ours(name: str) -> bool:
    from cytoedge.train.data.synth_noncells import SETS

    return (name == MARKER or name == FIELDS_DIR or name in SETS or name.startswith(STAGING_PREFIX)
            or name in {f"im_{f}" for f in SIPAKMED_FOLDERS.values()})


def _prepare_out(out: Path) -> Path:
    """Check ``out`` may be written; return a fresh staging folder inside it."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file: give a folder (new, empty, or a previous synthetic tree)")
    if out.is_dir():
        entries = [e.name for e in out.iterdir() if not e.name.startswith(STAGING_PREFIX)]
        if entries and not (out / MARKER).is_file():
            shown = ", ".join(sorted(entries)[:3])
            raise DataError(f"--out {out} already holds files that are not a synthetic tree ({shown}): "
                            "choose an empty or new folder")
        foreign = sorted(n for n in entries if not _ours(n))
        if foreign:
            raise DataError(f"--out {out} holds a synthetic tree plus other files ({', '.join(foreign[:3])}): "
                            "move them away or choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(stale)
        staging = out / f"{STAGING_PREFIX}{os.getpid()}"
        staging.mkdir()
        (staging / ".write-test").write_bytes(b"")
    except OSError as exc:
        raise DataError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    (staging / ".write-test").unlink()
    return staging


def _publish(staging: Path, out: Path, meta: dict) -> None:
    """Replace the previous synthetic tree (if any) by the staged one; the marker comes last."""
    (out / MARKER).unlink(missing_ok=True)
    for old in out.iterdir():
        if _ours(old.name) and old.is_dir() and not old.name.startswith(STAGING_PREFIX):
            shutil.rmtree(old)
    for entry in staging.iterdir():
        entry.rename(out / entry.name)
    staging.rmdir()
    atomic_write_json(out / MARKER, meta)


# --- writing ---------------------------------------------------------------------------------

def write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise DataError(f"OpenCV could not encode {path.name}")
    path.write_bytes(buf.tobytes())


def _crop_box(cyt: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The crop around a cell: its outline's box plus a margin, clipped to the frame; (x0, y0, x1, y1)."""
    x, y, w, h = outline_bbox(cyt)
    m = max(4, round(0.08 * max(w, h)))
    return max(0, x - m), max(0, y - m), min(size[0], x + w + m + 1), min(size[1], y + h + m + 1)


def _write_class(folder: Path, cls: str, ci: int, opts: SynthOptions) -> tuple[int, int]:
    from cytoedge.train.data.synth_frames import compose_frame

    crops_dir = folder / "CROPPED"
    crops_dir.mkdir(parents=True)
    counts = [opts.per_class // opts.frames + (i < opts.per_class % opts.frames) for i in range(opts.frames)]
    others = [c for c in SIPAKMED_CLASSES if c != cls]
    n_crops = 0
    for fi, n in enumerate(counts):
        rng = _rng(opts.seed, ci, fi)
        by = [others[int(k)] for k in rng.integers(len(others), size=int(rng.poisson(BYSTANDER_RATE)))]
        frame = compose_frame([cls] * n, opts.frame_size, opts.difficulty, rng, bystander_classes=by,
                              lab=lab_style(opts.lab))
        stem = f"{fi + 1:03d}"
        write_image(folder / f"{stem}.bmp", frame.image)
        for k, cell in enumerate(frame.cells, start=1):
            cyt, nuc = np.round(cell.shape.cyt, 1), np.round(cell.shape.nuclei[0], 1)
            (folder / f"{stem}_cyt{k:02d}.dat").write_text(format_outline(cyt))
            (folder / f"{stem}_nuc{k:02d}.dat").write_text(format_outline(nuc))
            x0, y0, x1, y1 = _crop_box(cyt, opts.frame_size)
            off = np.array([x0, y0], np.float64)
            write_image(crops_dir / f"{stem}_{k:02d}.bmp", frame.image[y0:y1, x0:x1])
            (crops_dir / f"{stem}_{k:02d}_cyt.dat").write_text(format_outline(cyt - off))
            (crops_dir / f"{stem}_{k:02d}_nuc.dat").write_text(format_outline(nuc - off))
            n_crops += 1
    return n_crops, len(counts)


def field_capacity(frame_size: tuple[int, int]) -> int:
    """How many cells of the slide mix (:data:`FIELD_MIX`) a sparse slide field holds at most."""
    from cytoedge.train.data.synth_morphology import mean_area

    typical = float(np.dot(list(FIELD_MIX.values()), [mean_area(c) for c in FIELD_MIX]))
    return max(1, int(FIELD_COVERAGE * frame_size[0] * frame_size[1] / typical))


def _write_fields(folder: Path, opts: SynthOptions) -> int:
    names, shares = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
    fit = field_capacity(opts.frame_size)
    fields = []
    for k in range(opts.fields):
        rng = _rng(opts.seed, len(SIPAKMED_CLASSES), k)
        n = int(rng.integers(max(1, fit // 2), fit + 1))
        fields.append(([names[int(i)] for i in rng.choice(len(names), size=n, p=shares)], rng))
    return write_fields(folder, fields, opts.seed, opts.difficulty, opts.frame_size, lab_style(opts.lab))


def write_fields(folder: Path, fields: list[tuple[list[str], np.random.Generator]], seed: int, difficulty: float,
                 frame_size: tuple[int, int], lab: LabStyle = LABS["a"]) -> int:
    """One slide field per ``(classes, rng)``: exactly those labelled cells, outlines and ``truth.json``.

    Returns the number of labelled cells. ``truth.json`` lists every field's cells (class,
    box, outline files) and its inflammatory cells (distractors).
    """
    from cytoedge.train.data.synth_frames import compose_frame

    folder.mkdir(parents=True)
    records, n_cells = [], 0
    for k, (classes, rng) in enumerate(fields):
        frame = compose_frame(classes, frame_size, difficulty, rng, lab=lab)
        stem = f"field_{k + 1:03d}"
        write_image(folder / f"{stem}.png", frame.image)
        cells = []
        for j, cell in enumerate(frame.cells, start=1):
            cyt, nuc = np.round(cell.shape.cyt, 1), np.round(cell.shape.nuclei[0], 1)
            (folder / f"{stem}_cyt{j:02d}.dat").write_text(format_outline(cyt))
            (folder / f"{stem}_nuc{j:02d}.dat").write_text(format_outline(nuc))
            cells.append({"id": j, "class": cell.cls, "bbox_xywh": list(outline_bbox(cyt)),
                          "cyt": f"{stem}_cyt{j:02d}.dat", "nuc": f"{stem}_nuc{j:02d}.dat",
                          "atypical": cell.params.atypical})
        n_cells += len(cells)
        records.append({"image": f"{stem}.png", "width": frame_size[0], "height": frame_size[1],
                        "cells": cells,
                        "distractors": [{"kind": d.kind, "bbox_xywh": list(d.bbox_xywh)} for d in frame.distractors]})
    truth = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
             "difficulty": difficulty, "bbox_format": "x, y, width, height in pixels (x right, y down)",
             "fields": records, **({"lab": lab.to_dict()} if lab != LABS["a"] else {})}
    (folder / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return n_cells


def write_slide(folder: Path, classes: list[str], seed: int, *, per_field: int | None = None,
                difficulty: float = DEFAULT_DIFFICULTY, frame_size: tuple[int, int] = (1280, 960),
                lab: str = "a") -> int:
    """A slide of exactly ``classes`` (one labelled cell each, in a seeded random order) over as many fields
    as it takes at ``per_field`` cells each (default: 3/4 of a field's capacity); the labelled-cell count.

    The benchmark of slide-level triage (``benchmarks.slide_triage``) builds slides with known
    abnormal fractions with it.
    """
    per_field = per_field or max(1, 3 * field_capacity(frame_size) // 4)
    order = _rng(seed, len(SIPAKMED_CLASSES) + 1, 0).permutation(len(classes))
    shuffled = [classes[i] for i in order]
    chunks = [shuffled[i:i + per_field] for i in range(0, len(shuffled), per_field)]
    fields = [(chunk, _rng(seed, len(SIPAKMED_CLASSES) + 2, k)) for k, chunk in enumerate(chunks)]
    return write_fields(folder, fields, seed, difficulty, frame_size, lab_style(lab))


def generate(opts: SynthOptions) -> SynthSummary:
    """Write the synthetic SIPaKMeD-shaped tree described in the module docstring into ``opts.out``."""
    opts.validate()
    t0 = time.perf_counter()
    out = opts.out
    staging = _prepare_out(out)
    try:
        crops, frames = {}, {}
        for ci, cls in enumerate(SIPAKMED_CLASSES):
            folder = staging / f"im_{SIPAKMED_FOLDERS[cls]}"
            crops[cls], frames[cls] = _write_class(folder, cls, ci, opts)
        field_cells = _write_fields(staging / FIELDS_DIR, opts) if opts.fields else 0
        non_cells = _write_non_cells(staging, opts) if opts.non_cells else {}
        options = {**asdict(opts), "out": None, "frame_size": list(opts.frame_size)}
        if opts.lab == "a":  # lab A's synth.json stays what it was before labs existed
            del options["lab"]
        else:
            options["lab_style"] = lab_style(opts.lab).to_dict()
        meta = {"generator": GENERATOR, "version": GENERATOR_VERSION, "options": options,
                "crops": crops, "frames": frames, "fields": opts.fields, "field_cells": field_cells,
                "non_cells": non_cells}
        _publish(staging, out, meta)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SynthSummary(out, crops, frames, opts.fields, field_cells, non_cells, time.perf_counter() - t0,
                        meta["options"])


def _write_non_cells(staging: Path, opts: SynthOptions) -> dict[str, int]:
    """``negatives/`` (seed) and ``ood/`` (another seed, other kinds); the count per set."""
    from cytoedge.train.data.synth_noncells import OOD_DIR, OOD_SEED_OFFSET, SETS, write_set

    return {name: write_set(staging / name, name, opts.non_cells,
                            opts.seed + (OOD_SEED_OFFSET if name == OOD_DIR else 0), opts.difficulty,
                            GENERATOR, GENERATOR_VERSION)
            for name in SETS}


# --- command line ------------------------------------------------------------------------------

def build_parser(prog: str = "edge-train synth") -> argparse.ArgumentParser:
    d = SynthOptions(out=Path("."))
    p = Parser(prog=prog, description="Write a synthetic SIPaKMeD-shaped data set "
               "(cluster frames, .dat outlines, single-cell crops, optional slide fields).")
    p.add_argument("--out", type=Path, required=True, help="folder to write (new, empty, or a previous synthetic tree)")
    p.add_argument("--per-class", type=int, default=d.per_class, help=f"crops per class (default {d.per_class})")
    p.add_argument("--frames", type=int, default=d.frames, help=f"cluster frames per class (default {d.frames})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--difficulty", type=float, default=d.difficulty,
                   help=f"0..1, how much the classes overlap (default {d.difficulty})")
    p.add_argument("--fields", type=int, default=d.fields,
                   help=f"mixed-class slide fields to write under OUT/fields (default {d.fields})")
    p.add_argument("--non-cells", type=int, default=d.non_cells, metavar="N",
                   help=f"non-cell crops per kind under OUT/negatives (training may use them) and OUT/ood "
                        f"(a test set of other kinds and another seed); 0: none (default {d.non_cells})")
    p.add_argument("--lab", default=d.lab, choices=sorted(LABS),
                   help="whose stain, camera and microscope: 'a' (default), or 'b', another lab's (denser bluer "
                        "haematoxylin, paler eosin, warmer white balance, gamma 0.8, JPEG 60, vignetting, softer focus)")
    p.add_argument("--frame-size", type=_size, default=d.frame_size, metavar="WxH",
                   help="frame size in pixels (default {}x{})".format(*d.frame_size))
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x960, got {text!r}") from None
    return w, h


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = SynthOptions(out=args.out, per_class=args.per_class, frames=args.frames, seed=args.seed,
                        difficulty=args.difficulty, fields=args.fields, frame_size=args.frame_size,
                        non_cells=args.non_cells, lab=args.lab)
    print(generate(opts).line())
    return 0


if __name__ == "__main__":
    import sys

    from cytoedge.edge_app.clitools import run_cli

    sys.exit(run_cli("edge-train synth", main))
