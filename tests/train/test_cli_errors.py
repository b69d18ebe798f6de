"""Bad input to edge-train: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoedge.train.config import TrainConfig, load_config_file
from cytoedge.train.errors import ConfigError


def _imagefolder(root: Path, classes=("a", "b"), per_class=3) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / c / f"{i:03d}_01.png"), np.full((16, 16, 3), 50 + 60 * i, np.uint8))
    return root


def edge_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cytoedge.train.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


@pytest.mark.parametrize("case", ["unknown_model", "folds_1", "few_images", "corrupt_config", "unknown_key",
                                  "missing_data", "not_writable", "existing_run", "missing_weights",
                                  "negative_threads"])
def test_bad_input_is_one_line(tmp_path, case):
    data = _imagefolder(tmp_path / "data")
    base = ["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--input-size", "32",
            "--no-progress"]
    if case == "unknown_model":
        args, msg = base + ["--model", "resnet9000"], "unknown model 'resnet9000'"
    elif case == "folds_1":
        args, msg = base + ["--folds", "1"], "--folds must be at least 2"
    elif case == "few_images":
        args, msg = base + ["--folds", "4"], "class 'a' has 3 image(s), fewer than --folds 4"
    elif case == "corrupt_config":
        (tmp_path / "c.toml").write_text("epochs = [oops\n")
        args, msg = base + ["--config", str(tmp_path / "c.toml")], "is not valid TOML"
    elif case == "unknown_key":
        (tmp_path / "c.toml").write_text("epoch = 3\n")
        args, msg = base + ["--config", str(tmp_path / "c.toml")], "unknown key epoch (did you mean epochs?)"
    elif case == "missing_data":
        args, msg = ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")], "does not exist"
    elif case == "not_writable":
        blocker = tmp_path / "file"
        blocker.write_text("x")  # a file where the run folder's parent should be: not writable even as root
        args, msg = ["--data", str(data), "--out", str(blocker / "run"), "--folds", "2"], "cannot write to output folder"
    elif case == "negative_threads":
        args, msg = base + ["--threads", "-1"], "--threads must be 0 (all cores) or more, got -1"
    elif case == "missing_weights":
        args, msg = base + ["--folds", "2", "--weights", str(tmp_path / "nope.pth")], "nope.pth does not exist"
    else:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text("{}")
        args, msg = base + ["--folds", "2"], "already holds a run: pass --resume"
    r = edge_train(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge-train: error: "), r.stderr
    assert msg in lines[0]
    assert "Traceback" not in r.stderr
    if case == "missing_weights":
        assert not (tmp_path / "run" / "config.json").exists()  # checked before the run folder is made


def test_config_file_values_and_cli_precedence(tmp_path):
    (tmp_path / "c.toml").write_text('epochs = 7\nlr = 0.01\nmilestones = [3, 5]\nmodel = "mobilenet_v2"\n')
    (tmp_path / "c.json").write_text('{"epochs": 2, "groups": false}')
    from cytoedge.train.config import resolve_config

    cfg = resolve_config(load_config_file(tmp_path / "c.toml"), {"lr": 0.5, "epochs": None})
    assert (cfg.epochs, cfg.lr, cfg.milestones, cfg.model, cfg.batch_size) == (7, 0.5, [3, 5], "mobilenet_v2", 16)
    assert load_config_file(tmp_path / "c.json") == {"epochs": 2, "groups": False}
    (tmp_path / "bad.json").write_text('{"groups": "no"}')
    with pytest.raises(ConfigError, match="groups"):
        load_config_file(tmp_path / "bad.json")


def test_paper_recipe_is_the_default():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.dampening, c.milestones, c.gamma, c.epochs, c.batch_size) == (
        1e-4, 0.9, 0.005, 0.0, [30, 60], 0.1, 100, 16)
    assert (c.loss, c.lam, c.label_smoothing, c.mining, c.folds, c.input_size) == (
        "hybrid", 1.0, 0.1, "batch_hard", 5, 224)
    # the one measured departure: the triplet term sees the L2-normalised embedding, margin 0.3 (the paper: raw, 1)
    assert (c.embedding, c.margin) == ("l2", 0.3)


def test_help_is_instant_and_imports_no_torch():
    code = ("import sys, train.cli, convert.cli, edge_app.cli, benchmarks.cli; "
            "heavy = [m for m in ('torch', 'tensorflow', 'onnx', 'torchvision', 'timm') if m in sys.modules]; "
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for prog in ("edge-train", "edge-convert", "edge-app", "bench-device"):  # the installed console scripts
        r = subprocess.run([str(Path(sys.executable).parent / prog), "--help"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and "usage:" in r.stdout, (prog, r.stderr)


def test_augmentation_and_normalisation_are_options(tmp_path):
    from cytoedge.edge_app.preprocess import IMAGENET_MEAN
    from cytoedge.train.cli import get_parser
    from cytoedge.train.config import resolve_config
    from cytoedge.train.data.transforms import Augmentation
    from cytoedge.train.loop import augmentation, preprocess_spec

    (tmp_path / "c.toml").write_text("rotation = 90\nhflip = 0.0\nhue = 0.05\nmean = [0.5, 0.5, 0.5]\n"
                                     "std = [0.25, 0.25, 0.25]\n")
    cfg = resolve_config(load_config_file(tmp_path / "c.toml"), {"brightness": 0.1, "data": "d"}).validate()
    assert augmentation(cfg) == Augmentation(90.0, 0.0, 0.1, 0.5, 0.3, 0.05)
    assert (preprocess_spec(cfg).mean, preprocess_spec(cfg).std) == ((0.5,) * 3, (0.25,) * 3)
    assert preprocess_spec(TrainConfig()).mean == IMAGENET_MEAN  # unset: the model's own (ImageNet)
    assert augmentation(TrainConfig()) == Augmentation()  # the paper's recipe
    args = get_parser().parse_args(["--mean", "0.4", "0.4", "0.4", "--hflip", "0.25"])
    assert (args.mean, args.hflip) == ([0.4, 0.4, 0.4], 0.25)
    for bad, msg in (({"mean": [0.5, 0.5]}, "--mean takes 3 values"), ({"hue": 0.7}, "--hue must be in 0..0.5"),
                     ({"hflip": 1.5}, "--hflip is a probability"), ({"std": [1.0, 0.0, 1.0]}, "--std takes 3 positive"),
                     ({"rotation": 270.0}, "--rotation must be in 0..180")):
        with pytest.raises(ConfigError, match=msg):
            TrainConfig(data="d", **bad).validate()
    (tmp_path / "b.toml").write_text("epochs = true\n")
    with pytest.raises(ConfigError, match="epochs = True is invalid"):
        load_config_file(tmp_path / "b.toml")


def test_switch_help_says_what_the_switch_does():
    from cytoedge.train.cli import get_parser

    text = " ".join(get_parser().format_help().split())
    assert "(default: True)" not in text and "(default: False)" not in text
    assert "--no-groups plain stratified folds, the paper's split" in text and "(default: group-aware folds)" in text
    assert "--no-amp full precision on CUDA too" in text
    assert "--no-progress no progress bars, on a terminal either" in text
