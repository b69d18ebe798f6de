"""Which cells to review first when the reviews are meant to teach the next model (the 'learning' order).

The screening queue puts the cells most likely abnormal first (suspicion). A lab that reviews to retrain wants the
cells whose label the model is least sure of, and not all from one slide or one class: the model's doubt about a
cell is the margin between its two most probable classes (calibrated probabilities), or, where only the top class's
probability is known (the store keeps that one), ``1 - confidence``. Cells are grouped by (slide, predicted class);
each round takes the most doubtful remaining cell of every group, so the first N reviews spread over slides and
classes while each group gives its most doubtful cells first.

>>> items = [("s1", "a", 0.9), ("s1", "a", 0.2), ("s1", "b", 0.5), ("s2", "a", 0.6)]
>>> learning_order([s for s, _, _ in items], [c for _, c, _ in items], [d for _, _, d in items])
[0, 3, 2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def doubt(probs: np.ndarray) -> np.ndarray:
    """Per row of calibrated probabilities: 1 - (p_top - p_second), in 0..1 (1: a tie)."""
    p = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    return 1.0 - (p[:, -1] - p[:, -2])


def learning_order(slides: Sequence[str], classes: Sequence[str], doubts: Sequence[float]) -> list[int]:
    """Indices of the cells in review order: round robin over (slide, predicted class), most doubtful first."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(slides, classes)):
        groups.setdefault(key, []).append(i)
    d = np.asarray(doubts, dtype=np.float64)
    queues = [sorted(ix, key=lambda i: (-d[i], i)) for ix in groups.values()]
    order: list[int] = []
    while queues:
        heads = sorted(queues, key=lambda q: (-d[q[0]], q[0]))
        order += [q.pop(0) for q in heads]
        queues = [q for q in heads if q]
    return order


def suspicion_order(p_abnormal: Sequence[float]) -> list[int]:
    """Highest abnormal probability first (the screening order; ties by index)."""
    p = np.asarray(p_abnormal, dtype=np.float64)
    return sorted(range(len(p)), key=lambda i: (-p[i], i))
