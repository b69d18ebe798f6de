"""One registry for every backbone (STYLE.md 1): thin variants, a duplicate name is an error.

The table itself is plain data so that ``--help`` and config validation need no torch;
the builders in :mod:`train.models.nets` import torch when a model is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "torchvision" or "timm"
    embedding_dim: int  # width of the pooled features after the last convolution
    weights_hint: str  # where ImageNet weights live for --pretrained (file name or hub id)
    paper_role: str  # "lightweight" (the paper's candidates) or "baseline"


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
                 weights: str | Path | None = None) -> Any:
    """Build ``name`` for ``num_classes`` classes; returns an :class:`train.models.nets.EdgeNet`.

    ``pretrained`` loads ImageNet weights from torchvision's / timm's local cache only
    (never a download); ``weights`` loads them from a file instead. Random
    initialisation otherwise.
    """
    info = get_model_info(name)
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    from train.models import nets  # heavy: torch, torchvision, timm

    return nets.build(info, num_classes, pretrained=pretrained, weights=weights)
