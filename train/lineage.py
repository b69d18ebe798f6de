"""Fine-tuning from an earlier model on the lab's reviewed crops, and the record of where a model came from.

``edge-train --init-from PARENT --reviews REVIEWS --data ORIGINAL``:

* ``PARENT`` is a bundle folder written by edge-train (``fold_k/``) or a model folder written by
  edge-convert (its ``bundle/`` holds the bundle; its ``model_card.json`` hash then names the parent
  model the device ran). The new network starts from the parent's weights (``weights_only=True``);
  its architecture, embedding and classes must be the parent's.
* ``REVIEWS`` is what ``edge-app export-reviews`` writes (a folder with ``cytoedge-reviews.csv``) or
  the web view's zip of the same tree. Every reviewed crop is grouped by the slide it came from, so a
  slide's cells stay on one side of a fold; they are added to the original data's samples.

The bundle's ``lineage`` records the parent (its bundle and card hashes) and the review set (a SHA-256
over every file and label, the count, classes and slide ids); edge-convert copies it into the card.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import sha256_file
from cytoedge.edge_app.classes import canonical_name
from cytoedge.train.data.sipakmed import Sample
from cytoedge.train.errors import BundleError, DataError

MANIFEST = "cytoedge-reviews.csv"  # edge_app.web.reviews.MANIFEST (kept equal by a test)
CARD_FILE = "model_card.json"
REVIEWS_DIR = "reviews"  # a zip is unpacked into the run folder under this name


@dataclass
class ReviewSet:
    """The reviewed crops one fine-tune learned from."""

    folder: Path
    samples: list[Sample]
    slides: list[str]
    per_class: dict[str, int]
    sha256: str  # over (relative file, label, file SHA-256) of every crop, sorted
    source: str = ""  # the folder or zip given

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "count": len(self.samples),
                "per_class": self.per_class, "slides": self.slides}


@dataclass
class Parent:
    bundle_dir: Path
    card_sha256: str = ""  # of model_card.json when PARENT is an edge-convert model folder
    meta: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle_dir.resolve()),
                "bundle_json_sha256": sha256_file(self.bundle_dir / "bundle.json"),
                "weights_sha256": self.meta.get("weights_sha256", ""), "card_sha256": self.card_sha256,
                "architecture": self.meta.get("architecture", ""),
                "parent_lineage": self.meta.get("lineage") or {}}


def resolve_parent(path: str | Path) -> Parent:
    """The parent bundle of ``--init-from``: a bundle folder, or a model folder holding ``bundle/``."""
    p = Path(path)
    card = ""
    if (p / CARD_FILE).is_file() and (p / "bundle" / "bundle.json").is_file():
        card, p = sha256_file(p / CARD_FILE), p / "bundle"
    meta_path = p / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(f"--init-from {path}: no bundle.json there (pass a fold folder written by edge-train or a "
                          "model folder written by edge-convert)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"--init-from {meta_path} cannot be read ({exc})") from None
    return Parent(p, card, meta)


# options of the parent a fine-tune takes unless the command line or config file sets them
INHERITED = ("model", "embedding", "input_size", "resize", "mean", "std")


def inherited_values(parent: Parent) -> dict[str, Any]:
    cfg = parent.meta.get("config") or {}
    return {k: cfg[k] for k in INHERITED if k in cfg}


def check_compatible(parent: Parent, model: str, embedding: str, class_names: list[str] | None) -> None:
    """One line when the new run cannot start from the parent's weights (``class_names`` None: not checked)."""
    meta = parent.meta
    if meta.get("architecture") != model:
        raise BundleError(f"--init-from {parent.bundle_dir} is a {meta.get('architecture')} model, this run trains "
                          f"{model}: drop --model or pass --model {meta.get('architecture')}")
    if meta.get("embedding", "raw") != embedding:
        raise BundleError(f"--init-from {parent.bundle_dir} has embedding {meta.get('embedding', 'raw')!r}, this "
                          f"run {embedding!r}: drop --embedding")
    if class_names is not None and list(meta.get("class_names") or []) != list(class_names):
        raise BundleError(f"--init-from {parent.bundle_dir} knows classes {meta.get('class_names')}, the data has "
                          f"{class_names}: fine-tune on data with the parent's classes")


def load_parent_weights(model: Any, parent: Parent) -> None:
    """The parent's weights into ``model``: the bundle's own loader (``weights_only=True``, SHA-256 checked)."""
    from cytoedge.train.bundle import read_bundle

    model.load_state_dict(read_bundle(parent.bundle_dir).load_model().state_dict())


def _unpack(zip_path: Path, dest: Path) -> Path:
    """Unpack the web view's zip (``reviews/<class>/...``) into ``dest``; the folder holding the manifest."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in zf.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise DataError(f"--reviews {zip_path}: entry {name!r} points outside the archive")
            zf.extractall(dest)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"--reviews {zip_path} is not a readable zip ({exc}): export it again") from None
    found = sorted(dest.rglob(MANIFEST))
    if not found:
        raise DataError(f"--reviews {zip_path} holds no {MANIFEST}: pass what edge-app export-reviews wrote")
    return found[0].parent


def read_reviews(path: str | Path, class_names: list[str], run_dir: Path) -> ReviewSet:
    """The reviewed crops of an export folder or zip, labelled with ``class_names``' indices, grouped by slide."""
    src = Path(path)
    if src.is_file() and zipfile.is_zipfile(src):
        folder = _unpack(src, run_dir / REVIEWS_DIR)
    elif src.is_dir():
        folder = src
    else:
        raise DataError(f"--reviews {src} is neither a folder nor a zip written by edge-app export-reviews")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise DataError(f"--reviews {folder} has no {MANIFEST}: pass the folder edge-app export-reviews wrote")
    index = {n: i for i, n in enumerate(class_names)}
    samples, digest, slides = [], hashlib.sha256(), set()
    rows = list(csv.DictReader(io.StringIO(manifest.read_text(encoding="utf-8"))))
    for row in sorted(rows, key=lambda r: r.get("file") or ""):
        rel = row.get("file") or ""
        if not rel:  # not_a_cell or no crop: listed, not exported
            continue
        label = canonical_name(row.get("label") or "") or row.get("label") or ""
        if label not in index:
            raise DataError(f"--reviews {manifest}: label {row.get('label')!r} is not one of the classes {class_names}")
        f = folder / rel
        if not f.is_file():
            raise DataError(f"--reviews {folder}: {rel} is listed in {MANIFEST} but missing")
        slide = row.get("slide") or "unknown"
        slides.add(slide)
        samples.append(Sample(f.resolve(), index[label], f"reviews/{slide}"))
        digest.update(f"{rel}\t{label}\t{sha256_file(f)}\n".encode())
    if not samples:
        raise DataError(f"--reviews {folder} lists no reviewed crop with a class label")
    per = Counter(class_names[s.label] for s in samples)
    return ReviewSet(folder, samples, sorted(slides), {c: per.get(c, 0) for c in class_names}, digest.hexdigest(),
                     str(src))


@dataclass
class Lineage:
    """What a fine-tune starts from and learns from; ``record()`` goes into bundle.json as ``lineage``."""

    parent: Parent | None
    reviews: ReviewSet | None

    def review_paths(self) -> set[Path]:
        return {s.path for s in self.reviews.samples} if self.reviews else set()

    def record(self, review_repeat: int = 1) -> dict[str, Any]:
        return {"parent": self.parent.record() if self.parent else None,
                "reviews": ({**self.reviews.record(), "repeat": review_repeat} if self.reviews else None)}
