"""The scripts behind the training tables (docs/measurements.md#measured-on-this-machine) and the demo's last line:
their arithmetic and their errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from cytoedge.benchmarks.demo_summary import main as demo_summary_main
from cytoedge.benchmarks.demo_summary import summary_line
from cytoedge.benchmarks.loss_comparison import parse_variant, summarize, variant_config

NAMES = ["a", "b", "c"]


def _run(seed: int, val: float, held: float, cm: list[list[int]]) -> dict:
    return {"seed": seed, "val_accuracy": val, "val_f1": val, "train_seconds": 10.0, "wall_seconds": 12.0,
            "final_train_triplet": 0.3, "final_train_ce": 0.8,
            "heldout": {"accuracy": held, "f1": held, "confusion_matrix": cm, "n": int(np.sum(cm)), "unknown_rate": 0.0}}


def test_summary_gives_mean_and_sample_std_and_the_baselines_confusable_pairs():
    ce_cm = [[5, 5, 0], [3, 7, 0], [0, 1, 9]]  # the baseline mixes a and b most, then b and c
    hy_cm = [[9, 1, 0], [0, 10, 0], [0, 0, 10]]
    results = {"ce": [_run(0, 0.70, 0.60, ce_cm), _run(1, 0.80, 0.70, ce_cm)],
               "hybrid": [_run(0, 0.90, 0.95, hy_cm), _run(1, 0.90, 0.95, hy_cm)]}
    table = summarize(results, NAMES, top_pairs=2)
    assert "| ce | 2 | 75.0 ± 7.1 | 65.0 ± 7.1 |" in table  # sample std of 70 and 80 is 7.07
    assert "| hybrid | 2 | 90.0 ± 0.0 | 95.0 ± 0.0 |" in table
    assert "| variant | a ↔ b | b ↔ c |" in table
    assert "| ce | 16 / 40 (40.0 %) | 2 / 40 (5.0 %) |" in table  # (5 + 3) x 2 seeds of 2 x 10 x 2 images
    assert "| hybrid | 2 / 40 (5.0 %) | 0 / 40 (0.0 %) |" in table


def test_variants_parse_into_edge_train_configs(tmp_path):
    v = parse_variant("hybrid: --lam 1 --embedding l2 --margin 0.3")
    assert v.name == "hybrid" and v.flags == ["--lam", "1", "--embedding", "l2", "--margin", "0.3"]
    cfg = variant_config(["--data", "d", "--model", "efficientnet_lite0", "--margin", "1"], v, 2, tmp_path / "x")
    assert (cfg.model, cfg.margin, cfg.embedding, cfg.seed, cfg.out, cfg.progress) == (
        "efficientnet_lite0", 0.3, "l2", 2, str(tmp_path / "x"), False)  # the variant's flags win
    for bad in ("no colon here", ": --lam 1", "a/b: --lam 1"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME: edge-train flags"):
            parse_variant(bad)


def _bench_doc(accuracy: dict) -> dict:
    return {"schema": "cytoedge-bench/1", "created": "2026-12-01T10:00:00",
            "models": [{"name": "m", "architecture": "efficientnet_lite0", "accuracy": accuracy}]}


def test_demo_summary_line_puts_int8_first(tmp_path, capsys):
    acc = {"torch": {"status": "ok", "n": 200, "accuracy": 0.855}, "tflite-int8": {"status": "ok", "n": 200,
                                                                                  "accuracy": 0.85},
           "onnx": {"status": "failed", "reason": "x"}}
    line = summary_line(_bench_doc(acc))
    assert line == ("demo: held-out accuracy of efficientnet_lite0 on 200 crops no training run saw: "
                    "tflite-int8 85.0 %, torch 85.5 %")
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "r.json").write_text(json.dumps(_bench_doc(acc)))
    assert demo_summary_main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == line


def test_demo_summary_without_accuracy_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps(_bench_doc({})))
    assert demo_summary_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run bench-device with --data" in err
    assert demo_summary_main([str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
