"""A torch Dataset over indexed samples, with an optional in-memory cache of resized crops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cytoedge.edge_app.preprocess import PreprocessSpec
from cytoedge.train.data.sipakmed import Sample
from cytoedge.train.data.transforms import Augmentation, EvalTransform, TrainTransform, read_bgr


class CellDataset(Dataset):
    """``(image tensor, label, index)`` per sample; ``train=True`` augments.

    With ``cache`` the resized + centre-cropped uint8 crop (the deterministic part
    of both transforms) is kept in memory after the first epoch: ``size^2 x 3`` bytes
    per image (150 KB at 224).
    """

    def __init__(self, samples: Sequence[Sample], spec: PreprocessSpec, *, train: bool,
                 cache: bool | dict[int, np.ndarray] = True, augmentation: Augmentation = Augmentation()) -> None:
        self.samples = list(samples)
        self.spec = spec
        self.train = train
        self.train_tf = TrainTransform(spec, augmentation)
        self.eval_tf = EvalTransform(spec)
        # a dict may be shared between datasets over the same samples (train and train-eval)
        self.cache: dict[int, np.ndarray] | None = cache if isinstance(cache, dict) else ({} if cache else None)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def _rgb(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        rgb = self.train_tf.geometry(read_bgr(self.samples[i].path))
        if self.cache is not None:
            self.cache[i] = rgb
        return rgb

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        label = self.samples[i].label
        if self.train:
            return self.train_tf.augment(self._rgb(i)), label, i
        # the device's own steps: the cached crop is preprocess()'s resize + crop, then its normalisation
        return self.eval_tf.from_cropped(self._rgb(i)), label, i
