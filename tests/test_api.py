"""``import cytoedge``: one installed package, its four calls, and the edge part without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cytoedge
from cytoedge.convert.errors import ConvertError
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.train.errors import ConfigError


BLOCK_HEAVY = """
import importlib.abc, sys
HEAVY = {"torch", "torchvision", "timm", "tensorflow", "keras", "tf_keras", "onnx", "onnxruntime", "onnx2tf"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Blocker())
"""


def test_train_takes_a_config_file_and_overrides(synth_tree, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{synth_tree}"\nmodel = "shufflenet_v2_x1_0"\ninput_size = 32\nfolds = 2\nfold = 0\n'
                   'epochs = 5\nloss = "ce"\nprogress = false\n')
    summary = cytoedge.train(cfg, epochs=1, out=str(tmp_path / "run"))
    assert [r["fold"] for r in summary["per_fold"]] == [0] and summary["epochs"] == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["input_size"] == 32  # the override won, the file's values stayed
    assert (tmp_path / "run" / "fold_0" / "bundle.json").is_file()
    with pytest.raises(ConfigError, match="unknown training setting"):
        cytoedge.train({"data": str(synth_tree), "epocs": 2})


def test_convert_checks_its_options_before_writing(tiny_bundle, tmp_path):
    with pytest.raises(ConvertError, match="--max-batch"):
        cytoedge.convert(tiny_bundle, tmp_path / "m", int8=True, max_batch=0)
    assert not (tmp_path / "m").exists()
    with pytest.raises(TypeError):
        cytoedge.convert(tiny_bundle, tmp_path / "m", calib_imgs=20)  # a misspelt option is not ignored


def test_classifier_classifies_without_torch_or_tensorflow(device_model):
    code = BLOCK_HEAVY + f"""
import numpy as np, cytoedge
clf = cytoedge.Classifier({str(device_model)!r})
rng = np.random.default_rng(0)
preds = clf.classify([rng.integers(0, 255, (70, 60, 3), dtype=np.uint8) for _ in range(3)])
print(len(preds), sorted({{p.class_name in clf.class_names and 0 <= p.confidence <= 1 for p in preds}}))
print(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or m.startswith(("cytoedge.train", "cytoedge.convert"))))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["3 [True]", "[]"]


def test_bench_measures_and_writes_the_result(bench_model, tmp_path):
    doc = cytoedge.bench(bench_model, out=tmp_path / "results", formats="tflite-int8", threads=1,  # as the CLI
                         warmup=0, min_runs=2, min_time=0.0)
    rows = [r for r in doc["rows"] if r["status"] == "ok"]
    assert rows and all(r["format"] == "tflite-int8" for r in rows)
    assert Path(doc["path"]).is_file() and json.loads(Path(doc["path"]).read_text())["rows"]


def test_list_options_take_what_the_command_line_takes(monkeypatch, tmp_path):
    """Issue 23.5: formats="tflite-int8" was read character by character ("unknown format 't'")."""
    from cytoedge.benchmarks import suite
    from cytoedge.train import run as train_run

    seen = {}
    monkeypatch.setattr(suite, "run_suite", lambda opts, progress: seen.setdefault("bench", opts) and {"rows": []})
    for call in ({"formats": "tflite-int8,onnx", "threads": "1,2", "batch": 4},
                 {"formats": ["tflite-int8", "onnx"], "threads": [1, 2], "batch": [4]}):
        seen.clear()
        cytoedge.bench("models/lite0", out=None, **call)
        o = seen["bench"]
        assert (o.models, o.formats, o.threads, o.batch) == ([Path("models/lite0")], ["tflite-int8", "onnx"], [1, 2], [4])
    with pytest.raises(CytoEdgeError, match="unknown format"):
        cytoedge.bench(["m"], out=None, formats="tflite-int9")
    monkeypatch.setattr(train_run, "run_training", lambda cfg: seen.setdefault("train", cfg))
    cytoedge.train({"data": str(tmp_path), "milestones": "3,6"}, mean="0.5, 0.5, 0.5", std=(0.25, 0.25, 0.25))
    cfg = seen["train"]
    assert (cfg.milestones, cfg.mean, cfg.std) == ([3, 6], [0.5] * 3, [0.25] * 3)
    with pytest.raises(ConfigError, match="milestones"):
        cytoedge.train({"data": str(tmp_path)}, milestones="3,x")


@pytest.mark.slow
def test_the_wheel_installs_beside_a_package_with_a_top_level_train(cytoedge_wheel, tmp_path):
    wheel = str(cytoedge_wheel)
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"cytoedge", "cytoedge-0.1.0.dist-info"}, tops
    target, other = tmp_path / "site", tmp_path / "other"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
                   check=True, capture_output=True, timeout=300)
    other.mkdir()
    for name in ("train", "convert", "benchmarks", "edge_app"):
        (other / f"{name}.py").write_text(f"WHO = 'another distribution'\n")
    code = """
import train, convert, benchmarks, cytoedge, cytoedge.edge_app.card, cytoedge.train.config, cytoedge.benchmarks.cli
from cytoedge.edge_app.web import app
assert train.WHO == convert.WHO == benchmarks.WHO == 'another distribution'
print(cytoedge.__file__); print(cytoedge.edge_app.card.__file__)
"""
    env = {**os.environ, "PYTHONPATH": f"{other}{os.pathsep}{target}"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert all(line.startswith(str(target)) for line in r.stdout.split()), r.stdout
