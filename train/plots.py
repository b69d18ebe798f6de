"""Per-fold figures: confusion matrix and loss / accuracy curves (matplotlib, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_bytes


def use_agg() -> None:
    """Draw without a display (servers, CI, a training job under nohup)."""
    import matplotlib

    matplotlib.use("Agg")


def save_figure(fig: Any, path: Path) -> None:
    """A figure -> PNG, written atomically, and the figure closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion(cm: list[list[int]], class_names: list[str], path: Path, title: str) -> None:
    use_agg()
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2, 1.0 * len(class_names) + 1.5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=35, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    save_figure(fig, path)


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    use_agg()
    import matplotlib.pyplot as plt

    ep = [h["epoch"] + 1 for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train total")
    a.plot(ep, [h["train_ce"] for h in history], "s--", label="train CE")
    a.plot(ep, [h["train_triplet"] for h in history], "^--", label="train triplet")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="validation CE")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [h["val_acc"] for h in history], "o-", label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.set_ylim(0, 1)
    b.legend()
    fig.suptitle(title)
    save_figure(fig, path)
