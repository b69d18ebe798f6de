"""The 'learning' order of the review queue (edge_app.review_order): doubtful cells first, spread over slides
and classes; apart from the screening queue's order."""

from __future__ import annotations

import numpy as np

from cytoedge.edge_app.review_order import doubt, learning_order, suspicion_order


def test_doubt_is_one_minus_the_margin():
    p = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    assert np.allclose(doubt(p), [1.0, 0.15, 0.8])


def test_the_first_cells_cover_every_slide_and_class_before_any_repeats():
    rng = np.random.default_rng(0)
    slides = [f"s{i % 3}" for i in range(60)]
    classes = [["a", "b", "c", "d"][i % 4] for i in range(60)]
    d = rng.random(60)
    boosted = [i for i in range(60) if i % 12 == 0]  # slide s0, class a: the 5 most doubtful cells
    d[boosted] += 5.0
    order = learning_order(slides, classes, d)
    assert sorted(order) == list(range(60))
    groups = {(s, c) for s, c in zip(slides, classes)}
    first = order[:len(groups)]
    assert {(slides[i], classes[i]) for i in first} == groups
    # within a group, the most doubtful cell comes first
    for g in groups:
        mine = [i for i in order if (slides[i], classes[i]) == g]
        assert list(d[mine]) == sorted(d[mine], reverse=True)
    # by doubt alone the first 5 would all be s0's class a; spread, one of them comes in the first 12
    assert sum(i in boosted for i in order[:12]) == 1 and order[0] in boosted


def test_suspicion_is_highest_abnormal_probability_first():
    assert suspicion_order([0.1, 0.9, 0.5]) == [1, 2, 0]


def test_review_queue_in_learning_order_spreads_over_slides(tmp_path, synth_tree):
    from tests.edge_app.web.webstore import fill_store

    from cytoedge.edge_app.store import Store
    from cytoedge.edge_app.web.reviews import ReviewError, review_queue

    fill_store(tmp_path / "s", synth_tree)
    with Store(tmp_path / "s", create=False) as s:
        doubt_items, n_doubt = review_queue(s, limit=1000)
        learn_items, n_learn = review_queue(s, limit=1000, order="learning")
        assert n_learn == n_doubt  # crops exist for abnormal and unknown cells only (the review crop policy)
        assert {i.cell.id for i in learn_items} == {i.cell.id for i in doubt_items}
        first = [(i.cell.slide_id, i.cell.class_name) for i in learn_items[:4]]  # one of each slide x class first
        assert sorted(first) == sorted({(i.cell.slide_id, i.cell.class_name) for i in learn_items})
        try:
            review_queue(s, order="nonsense")
        except ReviewError as exc:
            assert "learning" in str(exc)
        else:
            raise AssertionError("an unknown order was accepted")
