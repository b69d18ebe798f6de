"""Training's evaluation transform and the device's preprocessing give the same tensor."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess
from cytoedge.train.data.dataset import CellDataset
from cytoedge.train.data.sipakmed import Sample
from cytoedge.train.data.transforms import EvalTransform, TrainTransform, read_bgr


def _crop(tmp_path, h=150, w=110, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:, : w // 3] = (200, 40, 10)  # a strongly blue (BGR) band: catches a channel swap
    p = tmp_path / f"crop{seed}.png"
    cv2.imwrite(str(p), img)
    return p


def test_eval_transform_equals_device_preprocessing(tmp_path):
    spec = PreprocessSpec(size=96, resize=112)
    path = _crop(tmp_path)
    device = preprocess(cv2.imread(str(path)), spec)  # what edge_app does with a crop (HWC, RGB)
    train_eval = EvalTransform(spec)(read_bgr(path))  # what validation feeds the model (CHW)
    assert train_eval.shape == (3, 96, 96) and train_eval.dtype == torch.float32
    np.testing.assert_array_equal(train_eval.numpy(), device.transpose(2, 0, 1))
    # through the dataset (cached resize path) as well
    ds = CellDataset([Sample(path, 0, "g")], spec, train=False)
    x, _, _ = ds[0]
    np.testing.assert_allclose(x.numpy(), device.transpose(2, 0, 1), rtol=0, atol=1e-6)
    # channel order really is RGB: the blue band is high in channel 2 after normalisation
    assert x[2, :, :5].mean() > x[0, :, :5].mean()


def test_train_transform_is_augmented_normalised_and_seeded(tmp_path):
    spec = PreprocessSpec(size=64, resize=64)
    bgr = read_bgr(_crop(tmp_path, seed=1))
    tf = TrainTransform(spec)
    torch.manual_seed(0)
    a = tf(bgr)
    torch.manual_seed(0)
    b = tf(bgr)
    torch.manual_seed(1)
    c = tf(bgr)
    assert a.shape == (3, 64, 64) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = torch.from_numpy(preprocess(bgr, spec).transpose(2, 0, 1))
    assert not torch.allclose(a, plain)  # augmentation changed something
    # normalised range: [0,1] pixels map into [-mean/std, (1-mean)/std]
    assert a.min() >= -2.2 and a.max() <= 2.7
