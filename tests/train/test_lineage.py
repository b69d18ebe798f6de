"""Fine-tuning from a bundle on the lab's reviewed crops (edge-train --init-from / --reviews) and its lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS, canonical_name
from cytoedge.edge_app.store import CellResult, Store


def _reviewed_store(folder: Path, synth_tree: Path) -> int:
    """Three slides of real synthetic crops, every cell reviewed with its true class; one marked not_a_cell."""
    import cv2

    from cytoedge.edge_app.web.reviews import add_review

    files = sorted(synth_tree.glob("im_*/CROPPED/*.bmp"))[::6][:15]
    n = 0
    with Store(folder, crop_policy="all") as s:
        for k, slide in enumerate(("lab-b-1", "lab-b-2", "lab-b-3")):
            s.open_slide(slide, list(SIPAKMED_CLASSES), dict(SIPAKMED_GROUPS))
            run = s.start_run(slide, source="fields", model="shufflenet_v2_x1_0", model_sha256="0" * 64,
                              fmt="tflite-int8", board="x86", threads=1, settings={})
            chunk = files[5 * k:5 * k + 5]
            cells = [CellResult((10 * i, 10, 30, 30), "parabasal", "normal", 0.6, 1.0, False) for i in range(len(chunk))]
            s.add_frame(slide, run, name="f.png", size=(640, 480), cells=cells,
                        crops=[cv2.imread(str(f)) for f in chunk])
            s.end_run(run, {})
        ids = [r[0] for r in s.conn.execute("SELECT id FROM cells ORDER BY id")]
        truth = [canonical_name(f.parts[-3]) for f in files]
        for cid, label in zip(ids, truth):
            add_review(s, cid, label, "tester")
            n += 1
        add_review(s, ids[0], "not_a_cell", "tester")  # the latest review wins: not exported
    return n - 1


@pytest.fixture(scope="module")
def review_export(synth_tree, tmp_path_factory):
    from cytoedge.edge_app.web.reviews import export_imagefolder, export_zip

    tmp = tmp_path_factory.mktemp("reviews")
    n = _reviewed_store(tmp / "store", synth_tree)
    with Store(tmp / "store", create=False) as s:
        export_imagefolder(s, tmp / "export")
        data, _ = export_zip(s)
    (tmp / "reviews.zip").write_bytes(data)
    return tmp / "export", tmp / "reviews.zip", n


@pytest.fixture(scope="module")
def parent_bundle(synth_tree, tmp_path_factory):
    """A small parent: ShuffleNetV2 at 32 px, one epoch on 8 crops per class (what it learnt does not matter here)."""
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import run_training

    out = tmp_path_factory.mktemp("parent") / "run"
    run_training(TrainConfig(data=str(synth_tree), out=str(out), model="shufflenet_v2_x1_0", input_size=32, folds=2,
                             fold=0, epochs=1, limit_per_class=8, lr=0.05, loss="ce", progress=False, threads=1))
    return out / "fold_0"


def _train(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from cytoedge.train.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue() + err.getvalue()


@pytest.mark.slow
def test_fine_tune_starts_from_the_parent_and_records_the_reviews(parent_bundle, synth_tree, review_export, tmp_path):
    import torch

    folder, zip_path, n = review_export
    out = tmp_path / "ft"
    # a learning rate too small to move a weight: the fine-tune's weights are the parent's
    rc, text = _train(["--data", str(synth_tree), "--init-from", str(parent_bundle), "--reviews", str(zip_path),
                       "--epochs", "1", "--lr", "1e-12", "--folds", "2", "--fold", "0", "--loss", "ce",
                       "--review-repeat", "3", "--limit-per-class", "8", "--out", str(out), "--no-progress", "--threads", "1"])
    assert rc == 0, text
    meta = json.loads((out / "fold_0" / "bundle.json").read_text())
    assert meta["architecture"] == "shufflenet_v2_x1_0" and meta["input_size"] == 32  # inherited from the parent
    parent = json.loads((parent_bundle / "bundle.json").read_text())
    assert meta["lineage"]["parent"]["weights_sha256"] == parent["weights_sha256"]
    rev = meta["lineage"]["reviews"]
    assert rev["count"] == n == 14 and rev["slides"] == ["lab-b-1", "lab-b-2", "lab-b-3"] and rev["repeat"] == 3
    # the zip and the folder are the same review set
    folder_set = _review_sha(folder)
    assert rev["sha256"] == folder_set
    mine = torch.load(out / "fold_0" / "weights.pt", weights_only=True)
    theirs = torch.load(parent_bundle / "weights.pt", weights_only=True)
    convs = [k for k, v in theirs.items() if v.ndim == 4]
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-6) for k in convs)
    # reviewed crops are grouped by slide: one slide's crops never sit on both sides of the fold
    split = json.loads((out / "fold_0" / "split.json").read_text())
    side = {}
    for part in ("train", "val"):
        for path, _, group in split[part]:
            if group.startswith("reviews/"):
                side.setdefault(group, set()).add(part)
                assert Path(path).is_file()
    assert len(side) == 3 and all(len(v) == 1 for v in side.values())

    # edge-convert copies the lineage into the card's source record
    from cytoedge.convert.card_writer import source_record
    from cytoedge.train.bundle import read_bundle

    assert source_record(read_bundle(out / "fold_0"))["lineage"] == meta["lineage"]


def _review_sha(folder: Path) -> str:
    from cytoedge.train.lineage import read_reviews

    return read_reviews(folder, list(SIPAKMED_CLASSES), folder.parent).sha256


def test_manifest_name_is_the_exporters():
    from cytoedge.edge_app.web.reviews import MANIFEST
    from cytoedge.train import lineage

    assert lineage.MANIFEST == MANIFEST


def test_init_from_another_architecture_is_one_line(parent_bundle, synth_tree, tmp_path):
    rc, text = _train(["--data", str(synth_tree), "--init-from", str(parent_bundle), "--model", "squeezenet1_1",
                       "--epochs", "1", "--out", str(tmp_path / "x"), "--no-progress"])
    assert rc != 0
    assert "shufflenet_v2_x1_0" in text and "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_reviews_with_an_unknown_label_are_refused(tmp_path):
    from cytoedge.train.errors import DataError
    from cytoedge.train.lineage import MANIFEST, read_reviews

    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "1_1.png").write_bytes(b"x")
    (tmp_path / MANIFEST).write_text("file,slide,label\nweird/1_1.png,s1,weird\n")
    with pytest.raises(DataError, match="weird"):
        read_reviews(tmp_path, list(SIPAKMED_CLASSES), tmp_path)
