"""``edge-app classify``: single-cell crops from files, folders and globs, without the finder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.crops import ROW_KEYS, crop_files
from cytoedge.edge_app.errors import CytoEdgeError


@pytest.fixture(scope="module")
def crop_dirs(synth_tree, tmp_path_factory):
    """Cell crops, the ood/ non-cell set, and a folder with one undecodable file."""
    odd = tmp_path_factory.mktemp("odd")
    (odd / "broken.png").write_bytes(b"not a picture")
    (odd / "nested").mkdir()
    parabasal = sorted((synth_tree / "im_Parabasal" / "CROPPED").glob("*.bmp"))
    (odd / "nested" / "grey.png").write_bytes((parabasal[0]).read_bytes())  # any decodable image
    return {"cells": synth_tree / "im_Dyskeratotic" / "CROPPED", "ood": synth_tree / "ood", "odd": odd,
            "one": parabasal[1]}


def test_files_folders_and_globs_expand_once_in_natural_order(crop_dirs, tmp_path):
    cells = crop_dirs["cells"]
    files = crop_files([cells, str(cells / "001_0*.bmp"), crop_dirs["one"]])
    names = [f.name for f in files]
    assert len(names) == len(set(f.resolve() for f in files)) == 24 + 1  # the glob adds nothing new
    assert names[:2] == ["001_01.bmp", "001_02.bmp"] and files[-1] == crop_dirs["one"]
    tree = crop_dirs["cells"].parents[1]  # a whole SIPaKMeD tree: the crops, not the cluster pictures
    assert len([f for f in crop_files([tree / "im_Parabasal", tree / "im_Koilocytotic"])]) == 48
    assert all(f.parent.name == "CROPPED" for f in crop_files([tree / "im_Parabasal"]))
    ood = crop_files([crop_dirs["ood"]])
    assert len(ood) == 6 * 6 and {f.parent.name for f in ood} == {"black", "bubble", "clump", "out_of_focus",
                                                                   "stain_blob", "white"}
    for missing in (tmp_path / "nope", str(tmp_path / "*.png")):
        with pytest.raises(CytoEdgeError, match="no such file or folder"):
            crop_files([missing])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CytoEdgeError, match="no image files in folder"):
        crop_files([tmp_path / "empty"])


def test_classify_writes_table_json_and_csv_and_skips_unreadable(device_model, crop_dirs, tmp_path, capsys, caplog):
    out_json, out_csv = tmp_path / "rows.json", tmp_path / "rows.csv"
    rc = main(["classify", "--model", str(device_model), str(crop_dirs["ood"]), str(crop_dirs["cells"]),
               str(crop_dirs["odd"]), "--json", str(out_json), "--csv", str(out_csv)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    # one line for the unreadable file, through the logger (the CLI prints it as "edge-app: skipped ...")
    logged = [r.getMessage() for r in caplog.records if r.name == "cytoedge.edge_app"]
    assert len(logged) == 1 and logged[0].startswith(f"skipped {crop_dirs['odd'] / 'broken.png'}: not a readable image")
    rows = json.loads(out_json.read_text())
    assert len(rows) == 36 + 24 + 1
    assert all(list(r) == list(ROW_KEYS) for r in rows)
    for r in rows:
        assert r["class"] in ("superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic")
        assert 0.0 < r["confidence"] <= 1.0 and isinstance(r["score"], float) and isinstance(r["unknown"], bool)
        assert (r["group"] == "unknown") == r["unknown"]
        if not r["unknown"]:
            assert r["group"] == ("abnormal" if r["class"] in ("koilocytotic", "dyskeratotic") else
                                  "benign" if r["class"] == "metaplastic" else "normal")
    with out_csv.open() as fh:
        table = list(csv.DictReader(fh))
    assert [t["file"] for t in table] == [r["file"] for r in rows]
    assert [t["unknown"] == "True" for t in table] == [r["unknown"] for r in rows]
    # the terminal: one table row per image, then one summary line with the card's rule
    assert "confidence" in cap.out and "score" in cap.out
    assert Path(rows[0]["file"]).name in cap.out and "black_001.png" in cap.out
    last = cap.out.strip().splitlines()[-1]
    assert last.startswith(f"classified {len(rows)} crops") and "skipped 1 unreadable" in last
    assert "open-set score mahalanobis+image >" in last and f"wrote {out_json}" in last
    # the confidence is the calibrated one the Classifier reports
    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.edge_app.crops import read_crop

    clf = Classifier(device_model)
    first = clf.classify([read_crop(Path(rows[0]["file"]))[0]])[0]
    assert rows[0]["confidence"] == pytest.approx(first.confidence, abs=0.02)  # batched vs alone: int8 rounding
    assert rows[0]["score"] == pytest.approx(first.score, rel=0.05)


def test_format_keeps_its_meaning(device_model, crop_dirs, capsys):
    assert main(["classify", "--model", str(device_model), str(crop_dirs["one"]), "--format", "tflite-fp32",
                 "--no-table"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "(tflite-fp32," in out[0]


def test_bad_input_is_a_one_line_error(device_model, model_copy, crop_dirs, tmp_path, capsys):
    card_file = model_copy / "model_card.json"
    card = json.loads(card_file.read_text())
    card["schema_version"] = 1
    card_file.write_text(json.dumps(card))
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.png").write_bytes(b"")
    cases = [
        ([str(tmp_path / "missing.png")], device_model, "no such file or folder"),
        ([str(crop_dirs["one"])], model_copy, "schema version 1 is not supported (this CytoEdge reads versions 2 "
                                              "and 3): convert the model again"),
        ([str(crop_dirs["one"]), "--threads", "0"], device_model, "--threads must be >= 1"),
        ([str(tmp_path / "only_bad")], device_model, "none of the 1 files could be read"),
    ]
    for args, model, message in cases:
        assert main(["classify", "--model", str(model), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("edge-app: error:") and message in err[-1], err
        assert "Traceback" not in "".join(err)


def test_rows_round_non_finite_scores_to_null():
    from cytoedge.edge_app.crops import CropRow

    assert CropRow("a.png", "parabasal", "unknown", 0.5, float("nan"), True).to_dict()["score"] is None
    assert np.isclose(CropRow("a.png", "parabasal", "normal", 0.5, 1.25, False).to_dict()["score"], 1.25)


def test_the_command_prints_one_line_per_unreadable_file(device_model, crop_dirs):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "cytoedge.edge_app", "classify", "--model", str(device_model), str(crop_dirs["odd"]),
                        "--no-table"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ours = [line for line in r.stderr.splitlines() if line.startswith("edge-app")]  # LiteRT may add an INFO line
    assert len(ours) == 1 and ours[0].startswith(f"edge-app: skipped {crop_dirs['odd'] / 'broken.png'}: "
                                                 "not a readable image (corrupt")
    assert r.stdout.startswith("classified 1 crops") and "skipped 1 unreadable" in r.stdout
