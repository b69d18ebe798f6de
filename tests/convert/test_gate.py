"""The accuracy gate, the failure of a stage, and the CLI's one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cytoedge.convert.errors import AccuracyGateError, StageError
from cytoedge.convert.validate import ArtifactScore, apply_gate, format_table
from cytoedge.edge_app.card import load_card


def _score(fmt: str, acc: float) -> ArtifactScore:
    from cytoedge.edge_app.confidence import reliability
    from cytoedge.edge_app.rejection import OpenSetScore

    metrics = {"n": 100, "accuracy": acc, "macro_f1": acc, "agreement": 1.0, "max_logit_error": 0.0,
               "unknown_rate": 0.05, "threshold": 1.0, "temperature": 1.2, "ece_before": 0.1, "ece_after": 0.02,
               "abnormal": {"sensitivity": 0.8, "specificity": 0.9},
               "per_class": {"a": {"recall": 0.5, "precision": 0.75}, "b": {"recall": 1.0, "precision": 0.6}}}
    bins = reliability(np.array([[0.7, 0.3], [0.4, 0.6]]), np.array([0, 0]))
    return ArtifactScore(fmt, metrics, OpenSetScore("energy", 1.0),
                         {"temperature": 1.2, "reliability_before": bins, "reliability_after": bins})


def test_gate_rejects_only_beyond_max_drop():
    scores = {"torch": _score("torch", 0.90), "tflite-fp32": _score("tflite-fp32", 0.90),
              "tflite-int8": _score("tflite-int8", 0.895)}
    assert apply_gate(scores, max_drop=1.0) == []  # 0.5 points below is allowed
    scores["tflite-int8"] = _score("tflite-int8", 0.88)
    reasons = apply_gate(scores, max_drop=1.0)
    assert len(reasons) == 1 and reasons[0].startswith("tflite-int8: accuracy 88.00% is 2.00 points below PyTorch's 90.00%")
    assert scores["tflite-int8"].status == "rejected" and scores["tflite-fp32"].status == "ok"
    table = format_table(scores).splitlines()
    int8 = next(line for line in table if line.startswith("tflite-int8"))
    assert int8.split()[-1] == "rejected" and "80.0%" in int8 and "0.100 > 0.020" in int8  # abn sens, ECE
    assert any(line.startswith("a ") and "0.50 / 0.75" in line for line in table)  # per class: recall / precision
    assert table[-2].startswith("reliability of tflite-int8")


@pytest.mark.slow  # an onnx2tf conversion
def test_gate_fires_when_forced_and_the_card_says_why(tiny_bundle, tmp_path, no_network, convert_cli):
    """A second real conversion, down the other roads: fp32 only, fixed batch, normalised input, --max-drop -100."""
    out = tmp_path / "model"
    rc, so, se = convert_cli([str(tiny_bundle), "--out", str(out), "--fixed-batch", "--tflite-input", "normalized",
                              "--max-drop", "-100"])
    assert rc == AccuracyGateError.exit_code == 3
    assert se.count("\n") == 1 and se.startswith("edge-convert: error: onnx: accuracy")
    assert "tflite-fp32: accuracy" in se and "points below PyTorch" in se and "Traceback" not in se
    assert no_network == []
    card = load_card(out)  # written before the exit, with the verdicts
    assert set(card.artifacts) == {"torch", "onnx", "tflite-fp32"}
    assert not (out / "model_int8.tflite").exists()
    for fmt in ("onnx", "tflite-fp32"):
        entry = card.artifacts[fmt]
        assert entry.status == "rejected" and "--max-drop -100" in entry.status_reason
        card.verify_artifact(fmt)
    assert card.artifacts["torch"].status == "ok"
    assert card.validation["gate"]["max_drop_points"] == -100
    assert "rejected" in so
    fp32 = card.artifacts["tflite-fp32"]
    assert fp32.max_batch == 1 and fp32.input.shape[0] == 1 and fp32.input.space == "normalized"
    assert fp32.validation["agreement"] == 1.0 and fp32.validation["max_logit_error"] < 1e-3


def test_onnx2tf_failure_is_one_error_naming_the_stage_and_its_log(tmp_path):
    from cytoedge.convert.calibration import write_sample_file
    from cytoedge.convert.tflite import run_onnx2tf

    (tmp_path / "broken.onnx").write_bytes(b"this is not an onnx model")
    write_sample_file(np.zeros((1, 8, 8, 3), np.uint8), tmp_path)
    with pytest.raises(StageError) as err:
        run_onnx2tf(tmp_path / "broken.onnx", tmp_path)
    msg = str(err.value)
    assert msg.startswith("stage onnx2tf failed:") and "\n" not in msg
    assert str(tmp_path / "tflite.log") in msg and (tmp_path / "tflite.log").stat().st_size > 0


def test_onnx2tf_never_runs_without_its_sample_file(tmp_path):
    from cytoedge.convert.tflite import run_onnx2tf

    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(StageError, match="would download it"):
        run_onnx2tf(tmp_path / "m.onnx", tmp_path)


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out", "{out}"], "no checkpoint bundle at"),
    (["{bundle}", "--out", "{out}", "--val", "{missing}"], "--val"),
    (["{bundle}", "--out", "{out}", "--max-batch", "0"], "--max-batch must be at least 1"),
    (["{bundle}", "--out", "{out}", "--max-drop", "nan"], "--max-drop must be a finite number"),
    (["{bundle}", "--out", "{out}", "--cell-rejection", "0.7"], "--cell-rejection must be between 0 and 0.5"),
])
def test_bad_input_is_a_one_line_error(tiny_bundle, tmp_path, convert_cli, args, message):
    fill = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "out"), "bundle": str(tiny_bundle)}
    rc, so, se = convert_cli([a.format(**fill) for a in args])
    assert rc == 2 and se.count("\n") == 1 and message in se and "Traceback" not in se
    assert not (tmp_path / "out").exists()


def test_val_folder_with_unknown_classes_is_refused(tiny_bundle, tmp_path, convert_cli):
    import cv2

    (tmp_path / "val" / "platelet").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "val" / "platelet" / "a.png"), np.full((20, 20, 3), 200, np.uint8))
    rc, so, se = convert_cli([str(tiny_bundle), "--out", str(tmp_path / "out"), "--val", str(tmp_path / "val")])
    assert rc == 2 and "classes the model does not know (platelet)" in se


def test_bundle_split_pointing_nowhere_is_refused(tiny_bundle, tmp_path, convert_cli):
    moved = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, moved)
    split = json.loads((moved / "split.json").read_text())
    split["root"] = str(tmp_path / "gone")
    (moved / "split.json").write_text(json.dumps(split))
    rc, so, se = convert_cli([str(moved), "--out", str(tmp_path / "out")])
    assert rc == 2 and "does not exist" in se and "--val DATA" in se
