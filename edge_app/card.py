"""The model card: what ``edge-convert`` writes beside its artifacts and every device reads.

``model_card.json`` (schema :data:`SCHEMA_VERSION`) names each artifact with its
SHA-256, input spec (layout, dtype, shape, quantisation), outputs, the open-set score
and threshold for rejecting non-cells and the temperature that calibrates its
confidence, both fitted *on that artifact's own outputs* (an int8 file's embedding is
not the float one), and the validation results. ``load_card`` refuses an unknown schema version, and
``verify_artifact`` refuses a file whose hash does not match, each with a one-line
:class:`~edge_app.errors.ModelCardError`. README "Model card" documents every field.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_text, sha256_file
from cytoedge.edge_app.classes import default_groups
from cytoedge.edge_app.errors import ArtifactIntegrityError, ModelCardError
from cytoedge.edge_app.formats import get_format
from cytoedge.edge_app.preprocess import PreprocessSpec, Quantization
from cytoedge.edge_app.rejection import OpenSetScore

# 1: centroid distance + threshold per artifact, raw softmax. 2: an open-set score (any of
# edge_app.rejection.SCORES) + threshold and a calibration temperature per artifact; the
# device's confidence is the calibrated one. 3: the device view: score, threshold and temperature fitted on the
# finder's crops of the validation frames, and each artifact's per-class error rates (validation.error_rates) for
# the slide estimate. A version-2 card still loads and runs with its old rule (LEGACY_NOTE, said once).
SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)
LEGACY_NOTE = ("model card schema 2 (edge-convert before the device view): its open-set threshold and temperature "
               "were fitted on dataset crops, not the finder's, and it has no error rates, so unknown flags follow "
               "its old fit and slide reports use the count rule instead of the corrected estimate; run edge-convert "
               "again for both")
CARD_FILE = "model_card.json"


@dataclass
class TensorSpec:
    """One input or output tensor of an artifact."""

    name: str
    shape: list[int]  # batch dimension first; -1 where dynamic
    dtype: str = "float32"
    quant: Quantization = field(default_factory=Quantization)
    layout: str = ""  # inputs: "NHWC" (TFLite) or "NCHW" (ONNX, torch)
    space: str = "normalized"  # inputs: "normalized" (mean/std applied before quantising) or "pixels" (0..255)
    index: int = -1  # outputs: position in the runtime's output list (TFLite get_output_details()); -1 unknown

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        d = dict(d)
        d["quant"] = Quantization(**d.get("quant", {}))
        return cls(**d)


@dataclass
class ArtifactEntry:
    """One runnable artifact of the model (a key of :data:`edge_app.formats.FORMATS`)."""

    format: str
    file: str  # relative to the card's folder
    sha256: str
    size_bytes: int
    input: TensorSpec
    outputs: dict[str, TensorSpec]  # "logits", "embedding"
    max_batch: int = 1  # crops per invocation the artifact accepts (1 = fixed batch)
    open_set: OpenSetScore | None = None  # score + threshold for "not a cell we know", this artifact's outputs
    calibration: dict[str, Any] = field(default_factory=dict)  # temperature, ECE before/after, reliability bins
    validation: dict[str, Any] = field(default_factory=dict)  # accuracy, macro_f1, agreement, max_logit_error, n
    status: str = "ok"  # "ok" or "rejected" (failed the accuracy gate)
    status_reason: str = ""

    @property
    def error_rates(self) -> dict[str, Any] | None:
        """The validation confusion counts on the device view (card schema 3), or None (an older card)."""
        er = self.validation.get("error_rates")
        return er if isinstance(er, dict) and er.get("counts") is not None else None

    @property
    def temperature(self) -> float:
        """Divide the logits by this before the softmax (1.0: the card calibrates nothing)."""
        return float(self.calibration.get("temperature", 1.0))

    @classmethod
    def from_dict(cls, d: dict[str, Any], embedding_dim: int = 0, num_classes: int = 0) -> "ArtifactEntry":
        d = dict(d)
        fmt = d.get("format", "?")
        for key, what in (("open_set", "open-set score"), ("calibration", "confidence calibration")):
            if not isinstance(d.get(key), dict):
                raise ModelCardError(f"the model card's {fmt} entry has no {key} ({what}): convert the model again "
                                     "with this release's edge-convert")
        d["input"] = TensorSpec.from_dict(d["input"])
        d["outputs"] = {k: TensorSpec.from_dict(v) for k, v in d["outputs"].items()}
        try:
            d["open_set"] = OpenSetScore.from_dict(d["open_set"], embedding_dim, num_classes)
        except ValueError as exc:
            raise ModelCardError(f"the model card's {fmt} entry: {exc}; convert the model again") from None
        t = d["calibration"].get("temperature")
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ModelCardError(f"the model card's {fmt} entry has calibration temperature {t!r} (must be a positive "
                                 "number): convert the model again")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["open_set"] = self.open_set.to_dict() if self.open_set is not None else None
        return d


@dataclass
class ModelCard:
    architecture: str
    class_names: list[str]
    preprocessing: PreprocessSpec
    embedding_dim: int
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)
    class_groups: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # bundle path + sha256, fold, training metrics
    validation: dict[str, Any] = field(default_factory=dict)  # split, n_images, the printed table
    tools: dict[str, str] = field(default_factory=dict)  # versions of torch, onnx2tf, tensorflow, ...
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    directory: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.class_groups:
            self.class_groups = default_groups(self.class_names)

    # -- reading -----------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], directory: Path | None = None) -> "ModelCard":
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ModelCardError(
                f"model card schema version {version!r} is not supported (this CytoEdge reads versions "
                f"{' and '.join(map(str, READABLE_VERSIONS))}): convert the model again with this release's edge-convert")
        names = d.get("class_names") if isinstance(d, dict) else None
        if (not isinstance(names, list) or not names or len(set(map(str, names))) != len(names)
                or not all(isinstance(n, str) and n for n in names)):
            raise ModelCardError("model card is malformed (class_names is not a list of distinct class names, "
                                 f"got {str(names)[:80]!r}): convert the model again")
        try:
            return cls(
                architecture=d["architecture"],
                class_names=list(d["class_names"]),
                class_groups=dict(d.get("class_groups") or {}),
                preprocessing=PreprocessSpec.from_dict(d["preprocessing"]),
                embedding_dim=int(d["embedding_dim"]),
                artifacts={k: ArtifactEntry.from_dict(v, int(d["embedding_dim"]), len(d["class_names"]))
                           for k, v in d.get("artifacts", {}).items()},
                source=d.get("source", {}),
                validation=d.get("validation", {}),
                tools=d.get("tools", {}),
                created=d.get("created", ""),
                schema_version=int(version),
                directory=directory,
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            # a field of the wrong JSON type (a list where an object belongs ...) fails in any of these ways
            raise ModelCardError(f"model card is malformed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}): "
                                 "convert the model again") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "architecture": self.architecture,
            "class_names": list(self.class_names),
            "class_groups": dict(self.class_groups),
            "embedding_dim": self.embedding_dim,
            "preprocessing": self.preprocessing.to_dict(),
            "artifacts": {k: a.to_dict() for k, a in self.artifacts.items()},
            "source": self.source,
            "validation": self.validation,
            "tools": self.tools,
        }

    @property
    def legacy(self) -> bool:
        """A card of an older schema: it runs with its old rule (:data:`LEGACY_NOTE`)."""
        return self.schema_version < SCHEMA_VERSION

    # -- artifacts -----------------------------------------------------------
    def artifact(self, fmt: str) -> ArtifactEntry:
        get_format(fmt)  # unknown names are an error, not a miss
        if fmt not in self.artifacts:
            have = ", ".join(self.artifacts) or "none"
            raise ModelCardError(f"the model card in {self.directory} has no {fmt} artifact (it has: {have})")
        return self.artifacts[fmt]

    def artifact_path(self, fmt: str) -> Path:
        base = self.directory if self.directory is not None else Path(".")
        return base / self.artifact(fmt).file

    def verify_artifact(self, fmt: str) -> Path:
        """The artifact's path, after checking that it exists and its SHA-256 matches the card."""
        entry, path = self.artifact(fmt), self.artifact_path(fmt)
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact {path} named by the model card is missing: convert the model again")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise ArtifactIntegrityError(
                f"artifact {path} does not match its model card (sha256 {digest[:12]}… != {entry.sha256[:12]}…): "
                "it was changed or damaged; copy the model folder again or re-run edge-convert")
        return path


_LEGACY_SAID: set[str] = set()


def say_legacy_once(card: ModelCard, say: Any = None) -> bool:
    """Log :data:`LEGACY_NOTE` the first time this process meets an older card (per card file); True when said."""
    key = str(card.directory)
    if not card.legacy or key in _LEGACY_SAID:
        return False
    _LEGACY_SAID.add(key)
    (say or logging.getLogger("cytoedge.edge_app").warning)("warning: %s: %s", key, LEGACY_NOTE)
    return True


def card_path(model: str | Path) -> Path:
    """A model folder or a card file -> the card file."""
    p = Path(model)
    return p / CARD_FILE if p.is_dir() else p


def load_card(model: str | Path) -> ModelCard:
    """Read and check a model card (schema version, required fields). Hashes are checked by ``verify_artifact``."""
    path = card_path(model)
    if not path.is_file():
        raise ModelCardError(f"no model card at {path}: pass a folder written by edge-convert")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelCardError(f"model card {path} cannot be read ({exc}): convert the model again") from None
    return parse_card(raw, path)


def parse_card(raw: bytes, path: Path) -> ModelCard:
    """A card from the bytes of ``path`` (``edge_app.signing`` parses exactly the bytes it verified)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelCardError(f"model card {path} cannot be read ({type(exc).__name__}: "
                             f"{str(exc)[:100]}): convert the model again") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"model card {path} is not a JSON object: convert the model again")
    return ModelCard.from_dict(data, directory=path.parent)


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]")


def card_json(card: ModelCard) -> str:
    """The card as indented JSON, with every list of plain numbers on one line (the open-set matrices
    would otherwise take one line per number).

    >>> import json
    >>> text = card_json_of({"a": [[1.5, -2e-07], [3, 4]], "b": ["x", "y"]})
    >>> text.splitlines()[2], json.loads(text)["a"][0][1]
    ('    [1.5, -2e-07],', -2e-07)
    """
    return card_json_of(card.to_dict())


def card_json_of(d: dict[str, Any]) -> str:
    text = json.dumps(d, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"


def write_card(card: ModelCard, directory: str | Path) -> Path:
    """Write ``model_card.json`` into ``directory`` atomically."""
    return atomic_write_text(Path(directory) / CARD_FILE, card_json(card))


def describe_artifact(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, for a new :class:`ArtifactEntry`."""
    return sha256_file(path), path.stat().st_size
