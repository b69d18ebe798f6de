"""k-fold splits: stratified, and group-aware by default (crops of one cluster image never straddle a fold)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from cytoedge.train.data.sipakmed import Sample
from cytoedge.train.errors import DataError


def make_folds(samples: list[Sample], class_names: list[str], k: int, *, groups: bool = True,
               seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train_indices, val_indices) pairs. Refuses data that cannot fill every fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.array([s.label for s in samples])
    counts = Counter(y.tolist())
    for label, name in enumerate(class_names):
        if counts.get(label, 0) < k:
            raise DataError(f"class {name!r} has {counts.get(label, 0)} image(s), fewer than --folds {k}: "
                            "add images or use fewer folds")
    x = np.zeros(len(y))
    if not groups:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in splitter.split(x, y)]
    g = np.array([s.group for s in samples])
    for label, name in enumerate(class_names):
        n_groups = len(set(g[y == label]))
        if n_groups < k:
            raise DataError(f"class {name!r} comes from {n_groups} cluster image(s) (groups), fewer than --folds {k}: "
                            "use fewer folds, or --no-groups to split crops of one image across folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [(tr, va) for tr, va in splitter.split(x, y, g)]
    for i, (_, va) in enumerate(folds):
        missing = sorted(set(range(len(class_names))) - set(y[va].tolist()))
        if missing:
            raise DataError(f"fold {i} has no validation images of {', '.join(class_names[m] for m in missing)}: "
                            "use fewer folds or --no-groups")
    return folds
