"""Pieces of the lab-loop benchmark (benchmarks.lab_loop): the simulated review export, Reinhard normalisation,
the figures. The whole benchmark is a command (python -m cytoedge.benchmarks.lab_loop), not a test."""

from __future__ import annotations

import numpy as np

from cytoedge.benchmarks import lab_loop
from cytoedge.edge_app.classes import SIPAKMED_CLASSES


def test_simulated_reviews_are_what_fine_tuning_reads(tmp_path):
    from cytoedge.train.lineage import read_reviews

    rng = np.random.default_rng(0)
    pool = {"crops": [rng.integers(0, 255, (20, 20, 3), dtype=np.uint8) for _ in range(6)],
            "truth": ["parabasal", "dyskeratotic", "parabasal", "koilocytotic", "metaplastic", "parabasal"],
            "slides": ["slide-01", "slide-01", "slide-02", "slide-02", "slide-03", "slide-03"]}
    folder = lab_loop.write_reviews(tmp_path / "r", pool, [5, 1, 3])
    rs = read_reviews(folder, list(SIPAKMED_CLASSES), tmp_path)
    assert len(rs.samples) == 3 and rs.slides == ["slide-01", "slide-02", "slide-03"]
    assert rs.per_class["parabasal"] == rs.per_class["dyskeratotic"] == rs.per_class["koilocytotic"] == 1


def test_reinhard_moves_a_field_to_the_reference_statistics(tmp_path):
    from cytoedge.train.data.synth_frames import compose_frame
    from cytoedge.train.data.synth_lab import LABS

    classes = ["parabasal", "dyskeratotic", "superficial_intermediate"]
    a = compose_frame(classes, (320, 256), 0.45, np.random.default_rng(1), lab=LABS["a"]).image
    b = compose_frame(classes, (320, 256), 0.45, np.random.default_rng(1), lab=LABS["b"]).image
    ref = lab_loop.lab_stats([a])
    before = np.abs(lab_loop.lab_stats([b])[0] - ref[0]).sum()
    after = np.abs(lab_loop.lab_stats([lab_loop.reinhard(b, ref)])[0] - ref[0]).sum()
    assert after < 0.2 * before


def test_metrics_count_abnormal_and_slide_error():
    names = list(SIPAKMED_CLASSES)
    probs = np.eye(5)[[3, 3, 0, 0]]  # koilocytotic, koilocytotic, superficial, superficial
    m = lab_loop.metrics(probs, names, ["koilocytotic", "parabasal", "superficial_intermediate", "dyskeratotic"],
                         ["s1", "s1", "s2", "s2"])
    assert m["accuracy"] == 0.5 and m["sensitivity"] == 0.5 and m["specificity"] == 0.5
    assert m["slide_error"] == 0.5  # s1: 1.0 predicted vs 0.5 true; s2: 0.0 vs 0.5
