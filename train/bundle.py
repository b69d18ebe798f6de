"""The checkpoint bundle: what ``edge-train`` writes per fold and ``edge-convert`` reads.

A folder with

* ``weights.pt``  - a plain state_dict (``torch.load(weights_only=True)``; no pickled objects);
* ``bundle.json`` - architecture, classes and their clinical groups, preprocessing
  (input size, mean/std), embedding kind (``l2``, ``bnneck``, ``raw``; older bundles
  without the key are ``raw``) and dim, per-class embedding centroids and the
  distance threshold for "unknown", the resolved training config, fold, validation
  metrics, the SHA-256 of ``weights.pt``, and for a fine-tune its ``lineage`` (parent model, review set);
* ``split.json``  - the data root and the fold's train / validation samples
  (relative path, class index, group), so conversion calibrates on the training
  split and validates on the validation split that this very model never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_json, sha256_file
from cytoedge.edge_app.classes import default_groups
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.preprocess import PreprocessSpec
from cytoedge.train.errors import BundleError

BUNDLE_VERSION = 1
WEIGHTS_FILE, META_FILE, SPLIT_FILE = "weights.pt", "bundle.json", "split.json"


@dataclass
class Bundle:
    architecture: str
    class_names: list[str]
    preprocessing: PreprocessSpec
    embedding_dim: int
    centroids: list[list[float]]
    threshold: float
    config: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    folds: int = 1
    metrics: dict[str, Any] = field(default_factory=dict)
    class_groups: dict[str, str] = field(default_factory=dict)
    threshold_quantile: float = 0.99
    weights_sha256: str = ""
    created: str = ""
    embedding: str = "raw"  # how the net makes its embedding (train.models.registry.EMBEDDINGS)
    lineage: dict[str, Any] = field(default_factory=dict)  # parent model and review set of a fine-tune (train.lineage)
    directory: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> int:
        return self.preprocessing.size

    def meta_dict(self) -> dict[str, Any]:
        return {
            "bundle_version": BUNDLE_VERSION,
            "created": self.created,
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "class_groups": self.class_groups or default_groups(self.class_names),
            "input_size": self.input_size,
            "preprocessing": self.preprocessing.to_dict(),
            "embedding": self.embedding,
            "embedding_dim": self.embedding_dim,
            "centroids": self.centroids,
            "threshold": self.threshold,
            "threshold_quantile": self.threshold_quantile,
            "fold": self.fold,
            "folds": self.folds,
            "metrics": self.metrics,
            "config": self.config,
            "weights_sha256": self.weights_sha256,
            "lineage": self.lineage,
        }

    # -- paths ----------------------------------------------------------------
    def path(self, name: str) -> Path:
        if self.directory is None:
            raise BundleError("bundle has no folder yet")
        return self.directory / name

    def read_split(self) -> dict[str, Any]:
        """``{"root": str, "train": [[relpath, label, group], ...], "val": [...]}``."""
        p = self.path(SPLIT_FILE)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"bundle split file {p} cannot be read ({exc}): re-run edge-train") from None

    def load_model(self) -> Any:
        """Rebuild the network and load ``weights.pt`` (checked against its SHA-256)."""
        from cytoedge.train.models import create_model

        wpath = self.path(WEIGHTS_FILE)
        if not wpath.is_file():
            raise BundleError(f"bundle weights {wpath} are missing: re-run edge-train")
        if self.weights_sha256 and sha256_file(wpath) != self.weights_sha256:
            raise BundleError(f"bundle weights {wpath} do not match bundle.json (sha256 differs): re-run edge-train")
        model = create_model(self.architecture, self.num_classes, embedding=self.embedding)
        state = load_torch_file(wpath, BundleError, "bundle weights", "re-run edge-train, or copy the bundle again")
        if not isinstance(state, dict):
            raise BundleError(f"bundle weights {wpath} hold a {type(state).__name__}, not a state_dict: re-run edge-train")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(f"bundle weights {wpath} do not fit {self.architecture}: {first}") from None
        return model.eval()


def load_torch_file(path: Path, error: type[CytoEdgeError], what: str, remedy: str) -> Any:
    """``torch.load(path, weights_only=True)``, where a damaged file, random bytes or a pickle of objects is
    one line of ``error`` (its hash may match: whoever rewrote the file could rewrite the hash too)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses or reads
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the zip, pickle and tensor readers raise many kinds; all mean a bad file
        first = (" ".join(str(exc).split()) or type(exc).__name__)[:120]
        raise error(f"{what} {path} is damaged or not a plain tensor file ({type(exc).__name__}: {first}): "
                    f"{remedy}") from None


def write_bundle(directory: str | Path, bundle: Bundle, state_dict: dict[str, Any],
                 split: dict[str, Any] | None = None) -> Path:
    """Write weights, split and meta (meta last, so a bundle with a ``bundle.json`` is complete)."""
    import io

    import torch

    from cytoedge.edge_app.atomic import atomic_write_bytes

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    atomic_write_bytes(directory / WEIGHTS_FILE, buf.getvalue())
    if split is not None:
        atomic_write_json(directory / SPLIT_FILE, split)
    bundle.weights_sha256 = sha256_file(directory / WEIGHTS_FILE)
    bundle.created = bundle.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    bundle.directory = directory
    atomic_write_json(directory / META_FILE, bundle.meta_dict())
    return directory


def read_bundle(directory: str | Path) -> Bundle:
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"no checkpoint bundle at {directory} (missing {META_FILE}): pass a fold folder written by edge-train")
    try:
        d = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} cannot be read ({exc}): re-run edge-train") from None
    if d.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(f"{meta_path} has bundle version {d.get('bundle_version')!r}; this release reads {BUNDLE_VERSION}")
    try:
        return Bundle(
            architecture=d["architecture"],
            class_names=list(d["class_names"]),
            class_groups=dict(d.get("class_groups") or {}),
            preprocessing=PreprocessSpec.from_dict(d["preprocessing"]),
            embedding_dim=int(d["embedding_dim"]),
            embedding=str(d.get("embedding", "raw")),
            centroids=[list(map(float, c)) for c in d["centroids"]],
            threshold=float(d["threshold"]),
            threshold_quantile=float(d.get("threshold_quantile", 0.99)),
            config=d.get("config", {}),
            fold=int(d.get("fold", 0)),
            folds=int(d.get("folds", 1)),
            metrics=d.get("metrics", {}),
            weights_sha256=d.get("weights_sha256", ""),
            created=d.get("created", ""),
            lineage=dict(d.get("lineage") or {}),
            directory=directory,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path} is malformed ({type(exc).__name__}: {exc}): re-run edge-train") from None
