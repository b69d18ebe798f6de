"""How well any classifier can do on the synthetic cells: an oracle that sees each cell's own numbers.

    python -m cytoedge.benchmarks.synth_ceiling [--difficulty 0 0.3 0.45] [--per-class 4000] [--seed 0]

Every synthetic cell is drawn from a handful of morphology numbers (``train.data.synth_morphology``:
radius, N/C ratio, stain ...); at a higher ``--difficulty`` the classes' distributions overlap
and some cells borrow from another class. A gradient-boosted classifier (scikit-learn) trained on
those numbers themselves - no rendering, no blur, no noise - estimates the best accuracy an image
model can reach at each difficulty (3-fold cross-validation). A CNN sees less: the numbers only
through a rendered, blurred, noisy crop.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def oracle_accuracy(difficulty: float, per_class: int, seed: int) -> tuple[float, float]:
    """Mean and std over 3 folds of a gradient-boosted classifier on the cells' own parameters."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    from cytoedge.edge_app.classes import SIPAKMED_CLASSES
    from cytoedge.train.data.synth_morphology import sample_cell

    rng = np.random.default_rng(seed)
    x = np.array([sample_cell(c, difficulty, rng).values for c in SIPAKMED_CLASSES for _ in range(per_class)])
    y = np.repeat(np.arange(len(SIPAKMED_CLASSES)), per_class)
    scores = cross_val_score(HistGradientBoostingClassifier(max_iter=200, random_state=seed), x, y, cv=3)
    return float(scores.mean()), float(scores.std())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.synth_ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--difficulty", type=float, nargs="+", default=[0.0, 0.3, 0.4, 0.45, 0.5])
    p.add_argument("--per-class", type=int, default=4000, help="cells drawn per class and difficulty")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print("| difficulty | oracle accuracy (cells' own parameters) |\n| ---: | ---: |")
    for d in args.difficulty:
        mean, std = oracle_accuracy(d, args.per_class, args.seed)
        print(f"| {d:g} | {100 * mean:.1f} % ± {100 * std:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
