"""Slide triage at realistic size from cached device outputs (benchmarks.slide_pool)."""

from __future__ import annotations


def test_pooled_slides_are_drawn_as_asked_and_judged_as_the_report_does():
    """A pool with known device outputs: 2 % of normal cells called abnormal (p 0.6), abnormal cells called
    abnormal (p 0.9); drawn slides hold the asked abnormal share, the gallery finds the abnormal cells first,
    and normal slides are not referred while 10 % slides are."""
    import numpy as np

    from cytoedge.benchmarks.slide_pool import Pool, draw_slide, judge, measure_pool
    from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS
    from cytoedge.edge_app.report import TriageRule

    truth = np.array(["normal"] * 980 + ["benign"] * 200 + ["abnormal"] * 200 + [""] * 60)
    called = truth.copy()
    called[:20] = "abnormal"
    called[1180:1190] = "normal"
    called[-60:] = "unknown"
    p = np.where(truth == "abnormal", 0.9, 0.05)
    p[:20] = 0.6
    pool = Pool(truth, called, p)
    rng = np.random.default_rng(0)
    slide = draw_slide(pool, 3000, 0.05, rng)
    assert (slide["truth"] == "abnormal").sum() == 150 and (slide["truth"] != "").sum() == 3000
    counts = np.zeros((5, 5), int)
    for i in range(5):
        counts[i, i] = 2000
    counts[0, 3] = counts[1, 4] = 41  # 2 % of normal cells called abnormal
    rates = {"classes": list(SIPAKMED_CLASSES), "counts": counts.tolist()}
    row = judge(slide, rates, dict(SIPAKMED_GROUPS), TriageRule(limit=0.005, preparation="liquid-based"))
    assert row["precision_at_10"] == row["precision_at_30"] == 1.0 and row["verdict"] == "refer" and row["covered"]
    res = measure_pool(pool, rates, dict(SIPAKMED_GROUPS), TriageRule(limit=0.005, preparation="liquid-based"),
                       [0.0, 0.1], 5, (2000, 5000), 1)
    s = res["summary"]["per_fraction"]
    assert s["0"]["refer"] == 0 and s["0.1"]["refer"] == 5 and len(res["rows"]) == 10
    assert all(2000 <= r["cells"] <= 5000 for r in res["rows"])


def test_more_validation_cells_and_a_better_specificity_narrow_the_interval():
    import numpy as np

    from cytoedge.benchmarks.slide_pool import narrowing, render_narrowing
    from cytoedge.edge_app.classes import SIPAKMED_CLASSES, SIPAKMED_GROUPS

    counts = np.full((5, 5), 3) + np.eye(5, dtype=int) * 40
    rows = narrowing({"classes": list(SIPAKMED_CLASSES), "counts": counts.tolist()}, dict(SIPAKMED_GROUPS),
                     sizes=(5000,), draws=300)
    width = {r["case"]: r["5% of 5000"][1] - r["5% of 5000"][0] for r in rows}
    assert width["100x the validation cells"] < width["10x the validation cells"] < width["this card"]
    assert width["per-cell specificity 99 %"] < width["this card"]
    assert rows[1]["validation_cells"] == 10 * rows[0]["validation_cells"]
    assert "this card" in render_narrowing(rows)
