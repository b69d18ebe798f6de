"""--mean/--std (and the augmentation keys) set in edge-train reach the bundle and the converted model the device runs."""

from __future__ import annotations

import numpy as np
import pytest

MEAN, STD = (0.6, 0.5, 0.4), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def custom_norm_bundle(synth_tree, tmp_path_factory):
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import run_training

    out = tmp_path_factory.mktemp("norm") / "run"
    cfg = TrainConfig(data=str(synth_tree), out=str(out), input_size=32, folds=2, fold=0, epochs=1, lr=0.01,
                      grad_clip=2.0, loss="ce", progress=False, mean=list(MEAN), std=list(STD), rotation=30.0,
                      hflip=0.0, brightness=0.1, contrast=0.1, saturation=0.0, hue=0.0)
    run_training(cfg)
    return out / "fold_0"


def test_the_bundle_carries_the_configured_normalisation_and_augmentation(custom_norm_bundle):
    from cytoedge.train.bundle import read_bundle

    b = read_bundle(custom_norm_bundle)
    assert (b.preprocessing.mean, b.preprocessing.std) == (MEAN, STD)
    assert (b.config["rotation"], b.config["hflip"], b.config["hue"]) == (30.0, 0.0, 0.0)


def test_the_pixels_input_model_normalises_with_the_bundle_mean_and_std(custom_norm_bundle, synth_tree, tmp_path):
    """edge-convert folds the bundle's own mean/std into the model that takes the device's raw pixels.

    The network here returns its (normalised) input as the embedding, so the ONNX file's output
    is exactly the normalisation it applies to the pixels.
    """
    import onnxruntime as ort
    import torch

    from cytoedge.convert.onnx_export import INPUT_NAME, export_onnx
    from cytoedge.edge_app.preprocess import preprocess
    from cytoedge.train.bundle import read_bundle
    from cytoedge.train.data.transforms import read_bgr

    class Echo(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean(dim=(2, 3)), x.flatten(1)

    spec = read_bundle(custom_norm_bundle).preprocessing
    export_onnx(Echo(), spec, tmp_path / "m.onnx", space="pixels")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    crop = read_bgr(next(synth_tree.rglob("CROPPED/*.bmp")))
    pixels = preprocess(crop, spec, normalize=False)  # what the device hands to the int8 / fp32 file
    got = sess.run(["embedding"], {INPUT_NAME: pixels.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    want = ((pixels / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1).reshape(1, -1)
    assert np.abs(got - want).max() < 1e-4


def test_augmentation_keys_drive_the_training_transform(synth_tree):
    import torch

    from cytoedge.edge_app.preprocess import PreprocessSpec
    from cytoedge.train.data.transforms import Augmentation, EvalTransform, TrainTransform, read_bgr

    spec = PreprocessSpec(size=32, resize=32, mean=MEAN, std=STD)
    crop = read_bgr(next(synth_tree.rglob("CROPPED/*.bmp")))
    plain = EvalTransform(spec)(crop)
    none = Augmentation(rotation=0, hflip=0, brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.allclose(TrainTransform(spec, none)(crop), plain, atol=1e-5)  # nothing random left
    flip = Augmentation(rotation=0, hflip=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.allclose(TrainTransform(spec, flip)(crop), plain.flip(-1), atol=1e-5)  # always flipped
    torch.manual_seed(0)
    assert not torch.allclose(TrainTransform(spec, Augmentation())(crop), plain, atol=1e-3)  # the paper's: changes it
