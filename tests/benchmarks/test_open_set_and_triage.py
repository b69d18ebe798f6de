"""The two measurement benchmarks of issue 11 on the shared converted model: open-set rejection + calibration
(benchmarks.open_set) and slide-level triage (benchmarks.slide_triage)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Cells and non-cells none of the fitting saw: another seed of the generator."""
    from cytoedge.train.data.synth import SynthOptions, generate

    out = tmp_path_factory.mktemp("heldout") / "data"
    generate(SynthOptions(out=out, per_class=6, frames=2, seed=5, frame_size=(640, 480), non_cells=4))
    return out


def test_open_set_benchmark_measures_every_candidate_and_the_cards_score(bench_model, heldout, tmp_path, capsys):
    from cytoedge.benchmarks.open_set import main

    out = tmp_path / "open_set.json"
    assert main(["--model", str(bench_model), "--cells", str(heldout), "--ood", str(heldout / "ood"),
                 str(heldout / "negatives"), "--formats", "tflite-int8", "--ranks", "4,32", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    r = res["artifacts"]["tflite-int8"]
    assert set(r["candidates"]) == {"card", "mahalanobis+image-r4", "mahalanobis+image-r32", "mahalanobis-r4",
                                    "mahalanobis-r32", "image", "centroid", "energy", "max_logit", "msp"}
    assert set(r["kinds"]) == {f"ood/{k}" for k in ("stain_blob", "bubble", "out_of_focus", "clump", "black", "white")} \
        | {f"negatives/{k}" for k in ("debris", "fibre", "background", "blur", "noise")}
    card = json.loads((bench_model / "model_card.json").read_text())["artifacts"]["tflite-int8"]["open_set"]
    assert r["candidates"]["card"]["threshold_deployed"] == pytest.approx(card["threshold"])
    for c in r["candidates"].values():
        assert 0.0 <= c["auroc"] <= 1.0
        assert c["heldout_cells_rejected_at_heldout"] <= 0.05 + 1e-9  # the threshold's definition
        assert set(c["rejected_at_heldout"]) == set(r["kinds"])
    # the benchmark refits every candidate on the bundle's dataset crops; the card's own threshold was fitted on the
    # finder's crops of the validation frames (the device view, card schema 3), so the two need not agree
    assert r["candidates"]["card"]["score"] == "mahalanobis+image"
    fit = json.loads((bench_model / "model_card.json").read_text())["validation"]["fit"]
    assert fit["view"] == "finder" and fit["cell_rejection"] == card["cell_rejection"] == 0.02
    h = r["heldout"]
    assert h["n"] == 30 and 0 <= h["ece_calibrated"] <= 1 and h["temperature"] == pytest.approx(
        json.loads((bench_model / "model_card.json").read_text())["artifacts"]["tflite-int8"]["calibration"]["temperature"])
    printed = capsys.readouterr().out
    assert "non-cells rejected per kind" in printed and "| ood/black " in printed


def test_slide_classes_hold_the_asked_abnormal_share():
    from cytoedge.benchmarks.slide_triage import slide_classes

    for n, f in ((300, 0.0), (300, 0.01), (300, 0.05), (57, 0.02)):
        c = Counter(slide_classes(n, f))
        assert sum(c.values()) == n
        assert sum(k for cls, k in c.items() if SIPAKMED_GROUPS[cls] == "abnormal") == round(f * n)
        assert c["superficial_intermediate"] >= c["metaplastic"] >= c["parabasal"]  # the slide mix's order


def test_slide_triage_runs_edge_app_and_its_report_on_known_slides(bench_model, tmp_path, capsys):
    from cytoedge.benchmarks.slide_triage import main

    out = tmp_path / "triage.json"
    assert main(["--model", str(bench_model), "--fractions", "0,0.2", "--slides", "1", "--cells", "30",
                 "--work", str(tmp_path / "work"), "--json", str(out), "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    neg, pos = res["slides"]
    assert neg["true_abnormal"] == 0 and pos["true_abnormal"] == 6 and neg["true_cells"] == pos["true_cells"] == 30
    truth = json.loads((tmp_path / "work" / "slides" / pos["slide"] / "truth.json").read_text())
    assert sum(len(f["cells"]) for f in truth["fields"]) == 30
    for row in (neg, pos):
        assert row["found_cells"] > 0 and row["verdict"] in ("refer", "review", "no further review")  # the estimate's
        counted = {c: row["true_counts"][c] + row["count_error"][c] for c in SIPAKMED_CLASSES}
        assert sum(counted.values()) + row["reported_unknown"] == row["found_cells"]  # unknown cells are not counted
    s = res["summary"]
    assert s["positive_slides"] == 1 and s["negative_slides"] == 1
    assert s["sensitivity"] == float(pos["referred"]) and s["specificity"] == float(not neg["referred"])
    printed = capsys.readouterr().out
    assert "Triage rule, per slide: sensitivity" in printed and "| koilocytotic |" in printed
    from cytoedge.edge_app.errors import CytoEdgeError

    with pytest.raises(CytoEdgeError, match="is not empty"):
        main(["--model", str(bench_model), "--work", str(tmp_path / "work")])
