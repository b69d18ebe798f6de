"""The images conversion reads: the bundle's own split, or a data folder given with ``--val``.

Every image goes through :func:`edge_app.preprocess.preprocess` (resize, centre crop,
channel order) once and is kept as a ``size x size x 3`` uint8 crop; each runtime then
applies the rest of the device's steps (:func:`edge_app.preprocess.normalize_crop`,
quantisation) itself. 150 KB per image at 224 x 224.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoedge.convert.errors import ConvertError
from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess


@dataclass(frozen=True)
class ImageSet:
    """Labelled images: where they came from, their paths and class indices."""

    source: str  # "bundle train split", "bundle validation split" or the --val folder
    paths: list[Path]
    labels: np.ndarray  # int64, one class index per path

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray | list[int]) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        return ImageSet(self.source, [self.paths[i] for i in idx], self.labels[idx])

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist()


def split_images(split: dict, part: str, num_classes: int) -> ImageSet:
    """``part`` ("train" or "val") of a bundle's ``split.json`` as an :class:`ImageSet`."""
    name = {"train": "training", "val": "validation"}[part]
    rows = split.get(part) or []
    if not rows:
        hint = "" if part == "train" else ": pass --val DATA"
        raise ConvertError(f"the bundle's split.json has no {name} images{hint}")
    root = Path(split.get("root", ""))
    if not root.is_dir():
        raise ConvertError(f"the bundle's {name} images are in {root}, which does not exist: "
                           "restore the data folder the bundle was trained on (or pass --val DATA for validation)")
    labels = np.array([int(r[1]) for r in rows], dtype=np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ConvertError(f"the bundle's split.json has class indices outside 0..{num_classes - 1}: re-run edge-train")
    return ImageSet(f"bundle {name} split", [root / r[0] for r in rows], labels)


def folder_images(data: Path, class_names: list[str]) -> ImageSet:
    """Every image of a SIPaKMeD or ImageFolder tree, its classes mapped onto the bundle's by name."""
    from cytoedge.train.data.sipakmed import scan_dataset  # the training side's reader: one definition of the tree

    index = scan_dataset(data)
    unknown = [c for c in index.class_names if c not in class_names]
    if unknown:
        raise ConvertError(f"--val {data} has classes the model does not know ({', '.join(unknown)}); "
                           f"the model's classes are {', '.join(class_names)}")
    remap = np.array([class_names.index(c) for c in index.class_names], dtype=np.int64)
    labels = remap[np.array([s.label for s in index.samples], dtype=np.int64)]
    return ImageSet(str(data), [s.path for s in index.samples], labels)


def stratified(images: ImageSet, n: int, num_classes: int, seed: int = 0) -> ImageSet:
    """``n`` images spread as evenly as the classes allow (round robin over shuffled classes)."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(images.labels == k))) for k in range(num_classes)]
    picked: list[int] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(int(pool.pop()))
    return images.subset(sorted(picked))


def read_bgr(path: Path) -> np.ndarray:
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ConvertError(f"cannot read image {path} ({exc.strerror}): restore it or re-run edge-train") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ConvertError(f"image {path} is empty or not decodable: restore it or re-run edge-train")
    return img


def load_crops(images: ImageSet, spec: PreprocessSpec) -> np.ndarray:
    """``N x size x size x 3`` uint8 crops in the model's channel order (preprocess without normalising)."""
    out = np.empty((len(images), spec.size, spec.size, 3), np.uint8)
    for i, path in enumerate(images.paths):
        px = preprocess(read_bgr(path), spec, channel_order="BGR", normalize=False)
        out[i] = px  # preprocess keeps integer values when it does not normalise
    return out

