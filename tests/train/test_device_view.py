"""The device view: labelled frames through the device's own finder, matched to their outlines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cytoedge.edge_app.classes import SIPAKMED_CLASSES
from cytoedge.train.data.device_view import cluster_frames, finder_crops, frames_of_groups, truth_fields
from cytoedge.train.errors import DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from cytoedge.train.data.synth import SynthOptions, generate

    out = tmp_path_factory.mktemp("dv") / "data"
    generate(SynthOptions(out=out, per_class=4, frames=2, fields=2, seed=3))
    return out


def test_fields_give_labelled_finder_crops_and_real_non_cells(synth):
    frames = truth_fields(synth / "fields")
    truth = json.loads((synth / "fields" / "truth.json").read_text())
    assert [f.group for f in frames] == ["fields/field_001", "fields/field_002"]
    fc = finder_crops(frames, list(SIPAKMED_CLASSES))
    labels = fc.label_array
    assert fc.frames == 2 and fc.outlines == sum(len(r["cells"]) for r in truth["fields"])
    assert len(fc.crops) == len(labels) == len(fc.groups)
    assert 0.7 * fc.outlines <= len(fc.matched) <= fc.outlines  # the finder finds most cells, each matched once
    # every matched crop carries a class that its field really holds, as often as the field holds it at most
    for g, rec in zip(("fields/field_001", "fields/field_002"), truth["fields"]):
        held = np.bincount([SIPAKMED_CLASSES.index(c["class"]) for c in rec["cells"]], minlength=5)
        got = np.bincount(labels[(labels >= 0) & (np.array(fc.groups) == g)], minlength=5)
        assert (got <= held).all()
    assert all(c.ndim == 3 and c.shape[0] == c.shape[1] for c in fc.crops)  # the finder's square crops


def test_cluster_frames_are_kept_by_group(synth):
    frames = cluster_frames(synth)
    assert {f.group.split("/")[0] for f in frames} == set(SIPAKMED_CLASSES)
    assert all(len(f.outlines) == len(f.classes) and set(f.classes) == {f.group.split("/")[0]} for f in frames)
    keep = {frames[0].group}
    assert [f.group for f in frames_of_groups(frames, keep)] == [frames[0].group]
    fc = finder_crops(frames_of_groups(frames, keep), list(SIPAKMED_CLASSES))
    assert set(fc.label_array[fc.matched].tolist()) <= {SIPAKMED_CLASSES.index(frames[0].classes[0])}


def test_a_class_the_model_does_not_know_or_a_missing_truth_is_a_data_error(synth, tmp_path):
    with pytest.raises(DataError, match="not one of the model's"):
        finder_crops(truth_fields(synth / "fields"), ["parabasal"])
    with pytest.raises(DataError, match="no truth.json"):
        truth_fields(tmp_path)


def test_edge_convert_takes_the_validation_groups_frames_for_the_fit_and_refuses_data_without_frames(synth, tmp_path):
    """convert.pipeline's device view: training groups' frames for the score, validation groups' for the rest
    (group-aware, as the bundle's split.json names them); a split without labelled frames is a one-line error."""
    from cytoedge.convert.errors import ConvertError
    from cytoedge.convert.pipeline import ConvertOptions, _device_view
    from cytoedge.edge_app.preprocess import PreprocessSpec
    from cytoedge.train.data.sipakmed import scan_dataset

    index = scan_dataset(synth)
    groups = sorted({s.group for s in index.samples})
    val_groups = set(groups[1::2])  # one of the two frames of every class
    rows = [[str(s.path.relative_to(synth)), s.label, s.group] for s in index.samples]
    split = {"root": str(synth), "train": [r for r in rows if r[2] not in val_groups],
             "val": [r for r in rows if r[2] in val_groups]}
    names = list(SIPAKMED_CLASSES)
    view = _device_view(split, ConvertOptions(), names)
    assert set(view.val.groups) <= val_groups and not set(view.train.groups) & val_groups
    val, fit, val_crops, fit_crops, non_cells = view.sets(PreprocessSpec(32, 32))
    assert len(val) == len(val_crops) == len(view.val.matched) and val_crops.shape[1:] == (32, 32, 3)
    assert len(fit) == len(fit_crops) and len(non_cells) == len(view.val.non_cells)
    assert view.record()["validation"]["matched"] == len(val)
    assert ConvertOptions().rejection == 0.02 and ConvertOptions(view="dataset").rejection == 0.05
    empty = tmp_path / "crops_only"
    (empty / "parabasal").mkdir(parents=True)
    with pytest.raises(ConvertError, match="--view dataset"):
        _device_view({"root": str(empty), "train": rows, "val": rows}, ConvertOptions(), names)
