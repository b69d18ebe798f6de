"""The embedding the hybrid loss trains: bounded, recorded in the bundle, the space of the centroids; lambda = 1 trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cytoedge.train.bundle import read_bundle
from cytoedge.train.config import TrainConfig
from cytoedge.train.run import run_training

pytestmark = pytest.mark.slow  # every test trains a model from scratch


def _cfg(synth_tree, out, **kw) -> TrainConfig:
    base = dict(data=str(synth_tree), out=str(out), model="shufflenet_v2_x1_0", input_size=64, folds=2, fold=0,
                epochs=40, lr=0.05, grad_clip=2.0, progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def hybrid_run(synth_tree, tmp_path_factory):
    """The paper's lambda = 1 from random initialisation, with the default (L2-normalised) embedding."""
    out = tmp_path_factory.mktemp("hybrid") / "run"
    run_training(_cfg(synth_tree, out, loss="hybrid", lam=1.0))
    return out / "fold_0"


def test_hybrid_at_lambda_one_trains_from_scratch(hybrid_run):
    history = json.loads((hybrid_run / "history.json").read_text())
    metrics = json.loads((hybrid_run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.45  # chance 0.20; raw features stayed there (docs/measurements.md)
    assert all(h["train_triplet"] <= 4.0 + 1.0 for h in history)  # squared distances of unit vectors + margin
    assert history[-1]["train_triplet"] < history[0]["train_triplet"]  # the triplet term is being minimised


def test_bundle_records_the_embedding_and_fits_centroids_in_it(hybrid_run, synth_tree):
    from cytoedge.train.data.dataset import CellDataset
    from cytoedge.train.data.sipakmed import scan_dataset
    from cytoedge.train.loop import predict

    bundle = read_bundle(hybrid_run)
    assert bundle.embedding == "l2" and bundle.config["embedding"] == "l2"
    model = bundle.load_model()
    assert model.embedding == "l2"
    split = bundle.read_split()
    index = scan_dataset(synth_tree)
    by_path = {str(s.path.relative_to(index.root)): s for s in index.samples}
    train = [by_path[p] for p, _, _ in split["train"]]
    _, emb = predict(model, CellDataset(train, bundle.preprocessing, train=False, cache=False), torch.device("cpu"))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    labels = np.array([s.label for s in train])
    want = np.stack([emb[labels == k].mean(0) for k in range(bundle.num_classes)])
    np.testing.assert_allclose(np.asarray(bundle.centroids), want, atol=1e-4)


def test_a_bundle_written_before_the_embedding_key_loads_as_raw(hybrid_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(hybrid_run, old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["embedding"]
    (old / "bundle.json").write_text(json.dumps(meta))
    model = read_bundle(old).load_model()
    assert model.embedding == "raw"  # the only kind there was: the pooled features
    with torch.no_grad():
        _, emb = model(torch.randn(2, 3, 64, 64))
    assert not np.allclose(emb.norm(dim=1).numpy(), 1.0)


def test_squeezenet_trains_from_scratch(synth_tree, tmp_path):
    """Its logits no longer pass a ReLU: from random initialisation they keep varying and the model learns."""
    out = tmp_path / "squeeze"
    run_training(_cfg(synth_tree, out, model="squeezenet1_1", epochs=20, lr=0.02))
    metrics = json.loads((out / "fold_0" / "metrics.json").read_text())
    probs = np.loadtxt(out / "fold_0" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(4, 9))
    assert np.ptp(probs, axis=0).max() > 1e-3  # not the same scores for every image
    assert metrics["accuracy"] > 0.3
