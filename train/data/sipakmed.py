"""Read a SIPaKMeD download as it unpacks, or any ImageFolder tree, into an index of samples.

Accepted trees (DESIGN.md "SIPaKMeD on disk"):

* ``im_<Class>/`` folders (also doubled, ``im_X/im_X/``, also without the ``im_``
  prefix), each with cluster images ``NNN.bmp``, their outlines ``NNN_cyt01.dat`` /
  ``NNN_nuc01.dat``, and ``CROPPED/NNN_01.bmp`` single-cell crops. The crops are the
  samples; a crop's *group* is its cluster image (``<class>/NNN``) so that folds can
  keep crops of one image together. Folders without ``CROPPED/`` (e.g. ``fields/``
  written by the synthetic generator) are not classes and are reported as ignored.
* Otherwise an ImageFolder tree: every sub-folder holding images is a class (images
  found recursively); a file named ``NNN_MM.ext`` belongs to group ``NNN``, any other
  file is its own group.

A folder holding ``noncell.json`` (the synthetic generator's ``negatives/`` and ``ood/``
sets of non-cell crops) is never a class, in either layout; it is reported as ignored.

Zero-byte and undecodable images are skipped and counted; a missing folder, a class
without readable images, or no images at all is a one-line :class:`DataError`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cytoedge.edge_app.classes import SIPAKMED_CLASSES, canonical_name
from cytoedge.train.errors import DataError

IMAGE_SUFFIXES = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_CROP_NAME = re.compile(r"^(\d+)_\d+$")
_MAX_DEPTH = 3  # im_X/im_X/CROPPED sits two levels down; allow one more for a wrapping folder
NONCELL_MARKER = "noncell.json"  # a folder holding this file holds non-cell crops, never a class


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    group: str  # cluster image the crop was cut from, "<class>/<prefix>"


@dataclass(frozen=True)
class ClusterFrame:
    """A SIPaKMeD cluster image with its per-cell outline files (for the cell-finder benchmark)."""

    path: Path
    class_name: str
    cytoplasm: tuple[Path, ...]
    nuclei: tuple[Path, ...]


@dataclass
class DatasetIndex:
    root: Path
    layout: str  # "sipakmed" or "imagefolder"
    class_names: list[str]
    samples: list[Sample]
    frames: list[ClusterFrame] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ignored_dirs: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(s.label for s in self.samples)
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def group_counts(self) -> dict[str, int]:
        groups: dict[int, set[str]] = {}
        for s in self.samples:
            groups.setdefault(s.label, set()).add(s.group)
        return {name: len(groups.get(i, ())) for i, name in enumerate(self.class_names)}

    def summary(self) -> str:
        per = ", ".join(f"{n} {c}" for n, c in self.counts().items())
        line = (f"{self.root}: {self.layout} tree, {len(self.samples)} images in {len(self.class_names)} classes "
                f"({per}), {len({s.group for s in self.samples})} groups")
        if self.skipped:
            line += f"; skipped {len(self.skipped)} unreadable or empty image(s)"
        if self.ignored_dirs:
            line += f"; ignored {len(self.ignored_dirs)} folder(s) that are not classes ({', '.join(p.name for p in self.ignored_dirs)})"
        return line


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _readable(p: Path) -> str | None:
    """None if the file decodes as an image, else the reason."""
    import cv2
    import numpy as np

    try:
        size = p.stat().st_size
    except OSError as exc:
        return f"cannot stat ({exc.strerror})"
    if size == 0:
        return "zero bytes"
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return "not a decodable image"
    return None


def _subfolders(d: Path) -> list[Path]:
    """Sub-folders that may hold classes: not hidden, not a set of non-cell crops."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
                  and not (p / NONCELL_MARKER).is_file())


def _find_cropped_dirs(root: Path) -> list[Path]:
    """Folders that hold a CROPPED/ sub-folder, searched a few levels down."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(_MAX_DEPTH):
        nxt = []
        for d in frontier:
            for child in _subfolders(d):
                if (child / "CROPPED").is_dir():
                    found.append(child)
                else:
                    nxt.append(child)
        frontier = nxt
    return found


def _class_order(names: set[str]) -> list[str]:
    known = [c for c in SIPAKMED_CLASSES if c in names]
    return known + sorted(names - set(known))


def _group_of(class_name: str, stem: str) -> str:
    m = _CROP_NAME.match(stem)
    return f"{class_name}/{m.group(1) if m else stem}"


def _cluster_frames(class_dir: Path, class_name: str) -> list[ClusterFrame]:
    frames = []
    for img in sorted(p for p in class_dir.iterdir() if _is_image(p) and p.stem.isdigit()):
        cyt = tuple(sorted(class_dir.glob(f"{img.stem}_cyt*.dat")))
        nuc = tuple(sorted(class_dir.glob(f"{img.stem}_nuc*.dat")))
        frames.append(ClusterFrame(img, class_name, cyt, nuc))
    return frames


def scan_dataset(root: str | Path, *, check_images: bool = True) -> DatasetIndex:
    """Index the tree at ``root`` (see the module docstring for what is accepted)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder: pass the folder that holds the class folders")

    class_dirs: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    cropped = _find_cropped_dirs(root)
    if cropped:
        layout = "sipakmed"
        for d in cropped:
            class_dirs.setdefault(canonical_name(d.name), []).append(d)
        with_classes = {p for d in cropped for p in [d, *d.parents]}
        ignored = [p for p in sorted(root.iterdir()) if p.is_dir() and p not in with_classes
                   and not p.name.startswith((".", "__"))]
    else:
        layout = "imagefolder"
        for d in _subfolders(root):
            class_dirs.setdefault(canonical_name(d.name) or d.name, []).append(d)
        ignored = [p for p in sorted(root.iterdir()) if p.is_dir() and (p / NONCELL_MARKER).is_file()]
        if not class_dirs:
            raise DataError(f"no class folders in {root}: expected im_<Class>/CROPPED/*.bmp (SIPaKMeD) "
                            "or one sub-folder of images per class")

    class_names = _class_order(set(class_dirs))
    samples: list[Sample] = []
    frames: list[ClusterFrame] = []
    skipped: list[tuple[Path, str]] = []
    for label, name in enumerate(class_names):
        n_before = len(samples)
        for d in class_dirs[name]:
            if layout == "sipakmed":
                files = sorted(p for p in (d / "CROPPED").iterdir() if _is_image(p))
                frames.extend(_cluster_frames(d, name))
            else:
                files = sorted(p for p in d.rglob("*") if _is_image(p))
            for f in files:
                reason = _readable(f) if check_images else None
                if reason:
                    skipped.append((f, reason))
                    continue
                samples.append(Sample(f, label, _group_of(name, f.stem)))
        if len(samples) == n_before:
            where = ", ".join(str(d / "CROPPED" if layout == "sipakmed" else d) for d in class_dirs[name])
            raise DataError(f"class {name!r} has no readable images in {where}")
    if not samples:
        raise DataError(f"no images found under {root}")
    return DatasetIndex(root, layout, class_names, samples, frames, skipped, ignored)
