"""The paper's transforms, built on the device's preprocessing so that both see the same tensor.

* Evaluation: exactly :func:`edge_app.preprocess.preprocess` (resize shorter side +
  centre crop, RGB, ImageNet mean/std), as a CHW tensor.
* Training: the same resize + centre crop, then the augmentation — by default the
  paper's: rotation uniform in (-180 deg, 180 deg), horizontal flip p = 0.5,
  ColorJitter(brightness 0.3, contrast 0.5, saturation 0.3, hue 0.1); every value is an
  ``edge-train`` option (:class:`Augmentation`) — then the same normalisation. The corners a
  rotation uncovers are filled with the crop's own border colour (bright-field
  background), not black, because the device never sees black corners.

Images are read with OpenCV (BGR) everywhere, as on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cytoedge.edge_app.preprocess import PreprocessSpec, normalize_crop, preprocess, resize_center_crop
from cytoedge.train.errors import DataError


def read_bgr(path: str | Path) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image {path}")
    return img


class EvalTransform:
    """BGR uint8 crop -> normalised CHW float tensor, via the device's own function."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, bgr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(preprocess(bgr, self.spec).transpose(2, 0, 1)))

    def from_cropped(self, rgb: np.ndarray) -> torch.Tensor:
        """Same, for a crop already resized, centre-cropped and in the model's channel order."""
        return torch.from_numpy(np.ascontiguousarray(normalize_crop(rgb, self.spec).transpose(2, 0, 1)))


@dataclass(frozen=True)
class Augmentation:
    """The random changes a training image goes through; the defaults are the paper's."""

    rotation: float = 180.0  # degrees: the angle is uniform in (-rotation, rotation)
    hflip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.3  # ColorJitter factors, torchvision's meaning
    contrast: float = 0.5
    saturation: float = 0.3
    hue: float = 0.1


class TrainTransform:
    """BGR uint8 crop -> augmented, normalised CHW float tensor (the paper's recipe by default)."""

    def __init__(self, spec: PreprocessSpec, augmentation: Augmentation = Augmentation()) -> None:
        from torchvision.transforms import v2

        a = augmentation
        self.spec = spec
        self.rotation = a.rotation
        self.flip = v2.RandomHorizontalFlip(a.hflip)
        self.jitter = v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)

    def geometry(self, bgr: np.ndarray) -> np.ndarray:
        """The deterministic part (cacheable): RGB uint8 ``size x size x 3``."""
        rgb = bgr[:, :, ::-1] if self.spec.channel_order == "RGB" else bgr
        return np.ascontiguousarray(resize_center_crop(np.ascontiguousarray(rgb), self.spec))

    def augment(self, rgb: np.ndarray) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        border = torch.cat([x[:, 0, :], x[:, -1, :], x[:, :, 0], x[:, :, -1]], dim=1).mean(dim=1)
        angle = float(torch.empty(1).uniform_(-self.rotation, self.rotation))
        x = F.rotate(x, angle, interpolation=F.InterpolationMode.BILINEAR, fill=border.tolist())
        x = self.jitter(self.flip(x)).clamp_(0.0, 1.0)
        return (x - self.mean) / self.std

    def __call__(self, bgr: np.ndarray) -> torch.Tensor:
        return self.augment(self.geometry(bgr))
