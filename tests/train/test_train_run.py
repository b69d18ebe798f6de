"""edge-train end to end on synthetic data: bundles, summary, predictions, resume after kill -9, torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cytoedge.edge_app.preprocess import preprocess
from cytoedge.train.bundle import read_bundle

REPO = Path(__file__).parents[2]
QUICK = ["--model", "squeezenet1_1", "--input-size", "48", "--folds", "2", "--lr", "0.01", "--grad-clip", "2",
         "--batch-size", "16", "--no-progress"]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cytoedge.train.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


@pytest.fixture(scope="module")
def trained_run(synth_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    r = _run(["--data", str(synth_tree), "--out", str(out), "--epochs", "2", *QUICK])
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


@pytest.mark.slow  # the module's training run
def test_run_writes_both_folds_bundles_and_summary(trained_run, synth_tree):
    out, stdout = trained_run
    summary = json.loads((out / "summary.json").read_text())
    assert [f["fold"] for f in summary["per_fold"]] == [0, 1]
    assert set(summary["mean_std"]) == {"accuracy", "precision", "recall", "specificity", "f1",
                                        "abnormal_sensitivity", "abnormal_specificity"}
    assert "mean ± std" in stdout  # the Table-2-shaped summary was printed
    assert "abnormal sensitivity" in stdout and "precision (%)" in stdout  # clinical figures, per class
    assert set(summary["per_class_mean"]) == {"superficial_intermediate", "parabasal", "metaplastic", "koilocytotic",
                                              "dyskeratotic"}
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "squeezenet1_1" and config["epochs"] == 2 and config["momentum"] == 0.9
    for k in (0, 1):
        d = out / f"fold_{k}"
        for f in ("weights.pt", "bundle.json", "split.json", "predictions.csv", "metrics.json",
                  "confusion_matrix.json", "confusion_matrix.png", "curves.png", "checkpoint.pt"):
            assert (d / f).is_file(), f
        b = read_bundle(d)
        assert b.fold == k and b.num_classes == 5 and b.input_size == 48
        assert len(b.centroids) == 5 and len(b.centroids[0]) == 512 and b.threshold > 0
        split = b.read_split()
        assert Path(split["root"]) == synth_tree.resolve()
        train_groups = {g for _, _, g in split["train"]}
        val_groups = {g for _, _, g in split["val"]}
        assert train_groups and val_groups and not train_groups & val_groups  # group-aware


@pytest.mark.slow  # the module's training run
def test_summary_metrics_agree_with_saved_predictions(trained_run):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    out, _ = trained_run
    summary = json.loads((out / "summary.json").read_text())
    for row in summary["per_fold"]:
        with open(out / f"fold_{row['fold']}" / "predictions.csv") as fh:
            preds = list(csv.DictReader(fh))
        y_true = [p["true"] for p in preds]
        y_pred = [p["pred"] for p in preds]
        assert row["n"] == len(preds)
        assert row["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
        p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0,
                                                     labels=sorted(set(y_true)))
        assert row["recall"] == pytest.approx(r)
        assert row["precision"] == pytest.approx(p)
        abnormal = {"koilocytotic", "dyskeratotic"}
        pos = [t in abnormal for t in y_true]
        called = [q in abnormal for q in y_pred]
        if any(pos):
            assert row["abnormal_sensitivity"] == pytest.approx(
                sum(a and b for a, b in zip(pos, called)) / sum(pos))
        assert row["abnormal_specificity"] == pytest.approx(
            sum((not a) and (not b) for a, b in zip(pos, called)) / sum(not a for a in pos))
        for c, v in row["per_class"].items():
            n_true = sum(t == c for t in y_true)
            assert v["recall"] == pytest.approx(sum(t == q == c for t, q in zip(y_true, y_pred)) / n_true)
    accs = [r["accuracy"] for r in summary["per_fold"]]
    assert summary["mean_std"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))


@pytest.mark.slow  # the module's training run
def test_bundle_reloads_and_reproduces_saved_predictions_through_device_preprocessing(trained_run):
    out, _ = trained_run
    b = read_bundle(out / "fold_0")
    model = b.load_model()
    root = Path(b.read_split()["root"])
    with open(out / "fold_0" / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))[:12]
    import cv2

    x = np.stack([preprocess(cv2.imread(str(root / r["path"])), b.preprocessing) for r in rows])
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    probs = torch.softmax(logits, 1).numpy()
    saved = np.array([[float(r[f"p_{c}"]) for c in b.class_names] for r in rows])
    np.testing.assert_allclose(probs, saved, atol=2e-4)


@pytest.mark.slow  # two trainings
def test_resume_after_kill_matches_an_uninterrupted_run(synth_tree, tmp_path):
    args = ["--data", str(synth_tree), "--epochs", "3", "--limit-per-class", "12", *QUICK]
    straight = tmp_path / "straight"
    assert _run([*args, "--out", str(straight)]).returncode == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cytoedge.train.cli", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "fold_0" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "summary.json").exists()  # killed part-way
    r = _run(["--resume", "--out", str(killed), "--no-progress"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming after epoch" in r.stdout
    for k in (0, 1):
        a = torch.load(straight / f"fold_{k}" / "weights.pt", weights_only=True)
        b = torch.load(killed / f"fold_{k}" / "weights.pt", weights_only=True)
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert json.loads((straight / "summary.json").read_text())["mean_std"] == \
        json.loads((killed / "summary.json").read_text())["mean_std"]
    # --resume refuses to change the run it continues
    r = _run(["--resume", "--out", str(killed), "--epochs", "5"])
    assert r.returncode == 2 and "differ from it: epochs" in r.stderr


@pytest.mark.slow  # two trainings
def test_threads_option_sets_the_count_and_repeats_the_run_bit_for_bit(synth_tree, tmp_path):
    """--threads wins over OMP_NUM_THREADS (1 in _run's environment), is recorded, and two runs agree exactly."""
    args = ["--data", str(synth_tree), "--epochs", "1", "--limit-per-class", "12", "--fold", "0", "--threads", "2",
            *QUICK]
    for name in ("a", "b"):
        r = _run([*args, "--out", str(tmp_path / name)])
        assert r.returncode == 0, r.stderr[-3000:]
        assert "(1 process, 2 threads)" in r.stdout
        assert json.loads((tmp_path / name / "config.json").read_text())["threads"] == 2
    a = torch.load(tmp_path / "a" / "fold_0" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "fold_0" / "weights.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow  # torchrun
def test_torchrun_two_processes_on_cpu(synth_tree, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        "29517", "-m", "cytoedge.train.cli", "--data", str(synth_tree), "--out", str(out), "--epochs", "1",
                        "--fold", "0", "--limit-per-class", "12", "--device", "cpu", *QUICK],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(2 processes" in r.stdout
    assert r.stdout.count("fold 0 epoch 1/1") == 1  # only rank 0 reports
    assert (out / "fold_0" / "bundle.json").is_file() and not (out / "fold_1").exists()
    history = json.loads((out / "fold_0" / "history.json").read_text())
    # both ranks' images are counted: each rank trains on its half of the fold's training split
    split = json.loads((out / "fold_0" / "split.json").read_text())
    assert history[0]["train_images"] == 2 * (len(split["train"]) // 2)
    summary = json.loads((out / "summary.json").read_text())
    assert [f["fold"] for f in summary["per_fold"]] == [0]


def test_constant_output_warning_names_the_dead_model_and_what_to_do():
    import numpy as np

    from cytoedge.train.config import TrainConfig
    from cytoedge.train.loop import constant_output_warning

    cfg = TrainConfig(data="d", out="o", lr=0.02)
    dead = np.zeros((6, 5), dtype=np.float32)  # SqueezeNet's ReLU'd logits after they died
    msg = constant_output_warning(dead, cfg)
    assert msg is not None and "ln 5" in msg and "--lr (now 0.02)" in msg
    alive = dead.copy()
    alive[2, 1] = 0.3
    assert constant_output_warning(alive, cfg) is None
    assert constant_output_warning(dead[:1], cfg) is None  # one image says nothing


def test_random_init_with_the_papers_learning_rate_gets_a_hint():
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import random_init_hint

    hint = random_init_hint(TrainConfig(data="d", out="o"))  # the paper's lr 1e-4, no weights
    assert hint is not None and "lr 0.0001 (the paper's, for ImageNet weights)" in hint and "--lr 0.02" in hint
    tuned = random_init_hint(TrainConfig(data="d", out="o", lr=0.000222453))  # a tuned run.toml's rate
    assert tuned is not None and "lr 0.000222453 learns very slowly" in tuned and "paper" not in tuned
    assert random_init_hint(TrainConfig(data="d", out="o", pretrained=True)) is None
    assert random_init_hint(TrainConfig(data="d", out="o", weights="w.pth")) is None
    assert random_init_hint(TrainConfig(data="d", out="o", lr=0.02)) is None


@pytest.mark.slow  # trainings
def test_outlier_exposure_trains_on_the_negatives_only_when_asked(synth_tree, tmp_path):
    out = tmp_path / "oe"
    r = _run(["--data", str(synth_tree), "--out", str(out), "--epochs", "1", "--limit-per-class", "8", "--fold", "0",
              "--negatives", str(synth_tree / "negatives"), "--oe-weight", "0.5", *QUICK])
    assert r.returncode == 0, r.stderr[-3000:]
    history = json.loads((out / "fold_0" / "history.json").read_text())
    assert history[0]["train_oe"] > 0 and ", oe " in r.stdout
    assert json.loads((out / "config.json").read_text())["negatives"] == str(synth_tree / "negatives")
    bad = _run(["--data", str(synth_tree), "--out", str(tmp_path / "bad"), "--negatives", str(tmp_path / "none"),
                *QUICK])
    assert bad.returncode == 2 and "--negatives" in bad.stderr and bad.stderr.count("\n") == 1


def test_outlier_exposure_term_is_zero_for_uniform_and_grows_with_confidence():
    from cytoedge.train.losses import outlier_exposure_loss

    assert float(outlier_exposure_loss(torch.zeros(4, 5))) == pytest.approx(0.0, abs=1e-6)
    confident = torch.tensor([[9.0, 0, 0, 0, 0]], requires_grad=True)
    loss = outlier_exposure_loss(confident)
    loss.backward()
    assert float(loss) > 1.0 and confident.grad[0, 0] > 0  # the step lowers the confident logit
    assert float(outlier_exposure_loss(torch.zeros(0, 5))) == 0.0
