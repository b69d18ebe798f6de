"""Backbones split into features -> (logits, embedding), one forward pass (STYLE.md 2).

``EdgeNet.forward(x)`` returns ``(logits, embedding)``. The logits come from the globally
pooled features after the last convolution; the embedding is what the triplet loss
constrains, what the centroids and the "unknown" threshold are fitted in, and what every
exported artifact gives as its ``embedding`` output (one space through torch, ONNX, TFLite):

* ``l2`` (default): the pooled features divided by their L2 norm (FaceNet): squared
  distances lie in [0, 4], so the triplet term stays on the scale of cross-entropy at lambda = 1;
* ``bnneck``: a BatchNorm1d "neck" (Luo et al., bag of tricks for re-identification: no shift,
  the classifier reads its output) scaled by 1/sqrt(dim), so squared distances are O(1);
* ``raw``: the pooled features themselves (the paper, literally; unbounded scale).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cytoedge.train.models.registry import ModelInfo
from cytoedge.train.models.weights import imagenet_model


class EdgeNet(nn.Module):
    """A backbone with a pooled embedding and a classification head."""

    def __init__(self, name: str, features: nn.Module, pool: nn.Module, head: nn.Module,
                 embedding_dim: int, head_on_map: bool = False, embedding: str = "raw") -> None:
        super().__init__()
        self.arch = name
        self.features = features
        self.pool = pool  # feature map -> pooled features (N x embedding_dim)
        self.head = head  # pooled features (the neck's output, or the feature map for SqueezeNet) -> logits
        self.embedding_dim = embedding_dim
        self.head_on_map = head_on_map
        self.embedding = embedding
        self.neck = BNNeck(embedding_dim) if embedding == "bnneck" else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.features(x)
        pooled = self.pool(fmap)
        if self.neck is not None:
            emb = self.neck(pooled)
            logits = self.head(fmap if self.head_on_map else emb)
            return logits, emb * (1.0 / math.sqrt(self.embedding_dim))
        logits = self.head(fmap if self.head_on_map else pooled)
        if self.embedding == "l2":
            return logits, l2_normalize(pooled)
        return logits, pooled


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / ||x||`` per row, written as Mul / ReduceSum / Rsqrt so int8 TFLite keeps every op integer."""
    return x * torch.rsqrt((x * x).sum(dim=1, keepdim=True) + eps)


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d without a learnt shift (the bag of tricks' BNNeck)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias.requires_grad_(False)


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


def build(info: ModelInfo, num_classes: int, *, pretrained: bool = False,
          weights: str | Path | None = None, embedding: str = "raw") -> EdgeNet:
    name, dim = info.name, info.embedding_dim
    model = imagenet_model(info, pretrained=pretrained, weights=weights)
    net = lambda *parts, **kw: EdgeNet(name, *parts, dim, embedding=embedding, **kw)  # noqa: E731
    if name == "ghostnet_100":
        model.reset_classifier(num_classes)
        features = nn.Sequential(model.conv_stem, model.bn1, model.act1, model.blocks)
        return net(features, TimmPreLogits(model), model.classifier)
    if name == "efficientnet_lite0":
        features = nn.Sequential(model.conv_stem, model.bn1, model.blocks, model.conv_head, model.bn2)
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, num_classes))
        return net(features, GlobalAvgPool(), head)
    if name == "shufflenet_v2_x1_0":
        features = nn.Sequential(model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5)
        return net(features, GlobalAvgPool(), nn.Linear(dim, num_classes))
    if name == "mobilenet_v2":
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, num_classes))
        return net(model.features, GlobalAvgPool(), head)
    if name == "densenet121":
        return net(ReluThen(model.features), GlobalAvgPool(), nn.Linear(dim, num_classes))
    if name == "squeezenet1_1":
        # SqueezeNet's classifier is a 1x1 convolution on the map, then pooling. torchvision puts a ReLU between
        # them; here the logits are the pooled convolution itself: behind a ReLU, logits that all turn negative
        # are zero for every image and no gradient reaches them again (the model died from scratch at every
        # learning rate tried). The pooling is a mean over H, W (as AdaptiveAvgPool2d(1) + Flatten): onnx2tf
        # turns ONNX's GlobalAveragePool + Flatten into a reshape to [1, -1], which breaks batched TFLite inference.
        head = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(dim, num_classes, 1), GlobalAvgPool())
        nn.init.normal_(head[1].weight, mean=0.0, std=0.01)
        nn.init.zeros_(head[1].bias)
        return net(model.features, GlobalAvgPool(), head, head_on_map=True)
    raise AssertionError(f"no builder for registered model {name}")
