"""Backbones split into features -> (embedding, logits), one forward pass (STYLE.md 2).

``EdgeNet.forward(x)`` returns ``(logits, embedding)``: the embedding is the globally
pooled feature vector after the last convolution (what the triplet loss constrains
and the device uses to reject non-cells), the logits feed cross-entropy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from train.models.registry import ModelInfo
from train.models.weights import load_imagenet_state


class EdgeNet(nn.Module):
    """A backbone with a pooled embedding and a classification head."""

    def __init__(self, name: str, features: nn.Module, pool: nn.Module, head: nn.Module,
                 embedding_dim: int, head_on_map: bool = False) -> None:
        super().__init__()
        self.arch = name
        self.features = features
        self.pool = pool  # feature map -> embedding (N x embedding_dim)
        self.head = head  # embedding (or the feature map, for SqueezeNet) -> logits
        self.embedding_dim = embedding_dim
        self.head_on_map = head_on_map

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.features(x)
        emb = self.pool(fmap)
        logits = self.head(fmap if self.head_on_map else emb)
        return logits, emb


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ReluThen(nn.Module):
    """DenseNet applies ReLU to its last feature map before pooling."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.inner(x))


class TimmPreLogits(nn.Module):
    """timm's ``forward_head(pre_logits=True)``: pool -> conv_head -> act -> flatten (GhostNet)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.global_pool, self.conv_head = model.global_pool, model.conv_head
        self.act2, self.flatten = model.act2, model.flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.act2(self.conv_head(self.global_pool(x))))


def _torchvision(info: ModelInfo, pretrained: bool, weights: str | Path | None) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(info.name, weights=None)
    state = load_imagenet_state(info, pretrained=pretrained, weights=weights)
    if state is not None:
        model.load_state_dict(state)
    return model


def build(info: ModelInfo, num_classes: int, *, pretrained: bool = False,
          weights: str | Path | None = None) -> EdgeNet:
    name, dim = info.name, info.embedding_dim
    if info.source == "timm":
        import timm

        model = timm.create_model(name, pretrained=False)
        state = load_imagenet_state(info, pretrained=pretrained, weights=weights)
        if state is not None:
            model.load_state_dict(state)
        model.reset_classifier(num_classes)
        features = nn.Sequential(model.conv_stem, model.bn1, model.act1, model.blocks)
        return EdgeNet(name, features, TimmPreLogits(model), model.classifier, dim)

    model = _torchvision(info, pretrained, weights)
    if name == "shufflenet_v2_x1_0":
        features = nn.Sequential(model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5)
        return EdgeNet(name, features, GlobalAvgPool(), nn.Linear(dim, num_classes), dim)
    if name == "mobilenet_v2":
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, num_classes))
        return EdgeNet(name, model.features, GlobalAvgPool(), head, dim)
    if name == "densenet121":
        return EdgeNet(name, ReluThen(model.features), GlobalAvgPool(), nn.Linear(dim, num_classes), dim)
    if name == "squeezenet1_1":
        # SqueezeNet's classifier is a 1x1 convolution on the map, then ReLU and pooling. The pooling is
        # a mean over H, W (as torchvision's AdaptiveAvgPool2d(1) + Flatten, same weights): onnx2tf turns
        # ONNX's GlobalAveragePool + Flatten into a reshape to [1, -1], which breaks batched TFLite inference.
        head = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(dim, num_classes, 1), nn.ReLU(inplace=True), GlobalAvgPool())
        nn.init.normal_(head[1].weight, mean=0.0, std=0.01)
        nn.init.zeros_(head[1].bias)
        return EdgeNet(name, model.features, GlobalAvgPool(), head, dim, head_on_map=True)
    raise AssertionError(f"no builder for registered model {name}")
