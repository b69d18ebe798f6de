"""Architectures whose graphs onnx2tf converts differently from ShuffleNetV2's (the shared tiny bundle).

SqueezeNet computes its logits on the feature map (1x1 convolution, ReLU, pooling). With
ONNX's GlobalAveragePool + Flatten there, onnx2tf wrote a logits output of shape [1, -1]:
a batch of 4 came back as one row of 20 values and the int8 file could not be prepared.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow  # a training and an onnx2tf conversion
def test_squeezenet_converts_with_batched_logits(synth_tree, tmp_path, convert_cli):
    from cytoedge.convert.runners import TfliteRunner
    from cytoedge.edge_app.card import load_card
    from cytoedge.edge_app.preprocess import PreprocessSpec
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import run_training

    run = tmp_path / "run"
    run_training(TrainConfig(data=str(synth_tree), out=str(run), model="squeezenet1_1", input_size=64, folds=2, fold=0,
                             epochs=1, lr=0.002, loss="ce", progress=False, seed=0))
    out = tmp_path / "model"
    rc, _, se = convert_cli([str(run / "fold_0"), "--out", str(out), "--max-batch", "4", "--max-drop", "100"])
    assert rc == 0, se
    card = load_card(out)
    fp32 = card.artifacts["tflite-fp32"]
    assert fp32.outputs["logits"].shape == [-1, 5] and fp32.outputs["embedding"].shape == [-1, 512]
    assert fp32.max_batch == 4  # batched outputs matched one-at-a-time ones at conversion

    runner = TfliteRunner(out / fp32.file, PreprocessSpec(size=64, resize=64), 5, 512, fp32.input.space, batch=4)
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    logits, emb = runner.run(crops)
    assert logits.shape == (3, 5) and emb.shape == (3, 512)
    one_by_one = np.concatenate([runner.run(crops[i:i + 1], batch=1)[0] for i in range(3)])
    np.testing.assert_allclose(logits, one_by_one, atol=1e-4)


def test_a_dead_model_is_refused_before_conversion(tiny_bundle, tmp_path, convert_cli):
    """Constant scores for every image (dead units) cannot be calibrated: one line saying so, exit 2."""
    import json
    import shutil

    import torch

    from cytoedge.edge_app.atomic import sha256_file

    dead = tmp_path / "dead"
    shutil.copytree(tiny_bundle, dead)
    state = torch.load(dead / "weights.pt", map_location="cpu", weights_only=True)
    state["head.weight"].zero_()
    state["head.bias"].zero_()
    torch.save(state, dead / "weights.pt")
    meta = json.loads((dead / "bundle.json").read_text())
    meta["weights_sha256"] = sha256_file(dead / "weights.pt")
    (dead / "bundle.json").write_text(json.dumps(meta))

    rc, _, se = convert_cli([str(dead), "--out", str(tmp_path / "model"), "--int8", "--calib-images", "20"])
    assert rc == 2
    assert se.count("\n") == 1 and "gives every image the same scores" in se and "retrain" in se
    assert not (tmp_path / "model" / "model_card.json").exists()


@pytest.mark.slow  # a training and an onnx2tf conversion
def test_efficientnet_lite0_converts_with_its_own_normalisation_and_one_embedding_space(synth_tree, tmp_path,
                                                                                       convert_cli, no_network):
    """ImageNet-initialised EfficientNet-Lite0 (TF "same" padding, ReLU6, mean = std = 0.5) -> ONNX -> fp32 + int8.

    The card carries the model's own mean/std, and every artifact's ``embedding`` output is the
    L2-normalised embedding the triplet term trained and the centroids were fitted in.
    """
    from cytoedge.convert.onnx_export import read_metadata
    from cytoedge.convert.runners import TfliteRunner
    from cytoedge.edge_app.card import load_card
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import run_training

    run = tmp_path / "run"
    run_training(TrainConfig(data=str(synth_tree), out=str(run), model="efficientnet_lite0", pretrained=True,
                             input_size=64, folds=2, fold=0, epochs=1, lr=0.01, margin=0.3, progress=False, seed=0))
    out = tmp_path / "model"
    rc, so, se = convert_cli([str(run / "fold_0"), "--out", str(out), "--int8", "--calib-images", "20",
                              "--max-batch", "4", "--max-drop", "100"])
    assert rc == 0, se
    card = load_card(out)
    assert list(card.preprocessing.mean) == [0.5, 0.5, 0.5] and list(card.preprocessing.std) == [0.5, 0.5, 0.5]
    assert read_metadata(out / "model.onnx")["embedding"] == "l2"
    fp32, int8 = card.artifacts["tflite-fp32"], card.artifacts["tflite-int8"]
    assert fp32.validation["agreement"] == 1.0 and fp32.validation["max_logit_error"] < 1e-3

    import cv2

    from cytoedge.edge_app.preprocess import preprocess

    files = sorted(synth_tree.rglob("*.bmp"))[::10][:8]  # cells: int8 ranges were calibrated on cells
    crops = np.stack([preprocess(cv2.imread(str(f)), card.preprocessing, normalize=False) for f in files]).astype(np.uint8)
    for entry, tol in ((fp32, 1e-3), (int8, 0.02)):
        runner = TfliteRunner(out / entry.file, card.preprocessing, 5, 1280, entry.input.space, batch=4)
        _, emb = runner.run(crops)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=tol)  # unit vectors, as in training
        # the open-set score is fitted in that same space: its class means lie in the unit ball
        means = entry.open_set.embedding.means
        assert means.shape == (5, 1280) and np.all(np.linalg.norm(means, axis=1) <= 1.0 + tol)
    assert no_network == []  # --pretrained, training and conversion all ran offline
