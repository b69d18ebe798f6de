"""k-fold cross-validation around :func:`train.loop.train_fold`, and the summary across folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.train.config import TrainConfig
from cytoedge.train.data.sipakmed import DatasetIndex, scan_dataset
from cytoedge.train.errors import ConfigError
from cytoedge.train.metrics import METRIC_KEYS, mean_std

if TYPE_CHECKING:
    from cytoedge.train.lineage import Lineage
    from cytoedge.train.loop import EpochCallback

CONFIG_FILE, SUMMARY_FILE = "config.json", "summary.json"


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {out} ({exc.strerror}): choose another --out") from None


def limit_samples(index: DatasetIndex, per_class: int, seed: int) -> DatasetIndex:
    """At most ``per_class`` images per class, chosen reproducibly (whole groups first, so folds stay group-aware)."""
    if per_class <= 0:
        return index
    rng = np.random.default_rng(seed)
    keep = []
    for label in range(len(index.class_names)):
        items = [s for s in index.samples if s.label == label]
        groups = sorted({s.group for s in items})
        order = {g: i for i, g in enumerate(rng.permutation(groups))}
        items.sort(key=lambda s: (order[s.group], str(s.path)))
        keep.extend(items[:per_class])
    return DatasetIndex(index.root, index.layout, index.class_names, keep, index.frames, index.skipped, index.ignored_dirs)


def load_saved_config(out: str | Path) -> TrainConfig:
    """The resolved config a run saved in its folder (for --resume)."""
    saved = Path(out) / CONFIG_FILE
    if not saved.is_file():
        raise ConfigError(f"--resume: no run to resume in {out} (no {CONFIG_FILE}); start it without --resume")
    try:
        data = json.loads(saved.read_text(encoding="utf-8"))
        data["out"] = str(out)
        return TrainConfig(**data).validate()
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"--resume: {saved} cannot be read ({exc}); start a new run") from None


def prepare_run_folder(cfg: TrainConfig, resume: bool) -> None:
    """A new run refuses to overwrite a previous one; a resumed run must find its folder."""
    out = Path(cfg.out)
    if resume:
        load_saved_config(out)
        return
    if (out / CONFIG_FILE).is_file():
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    check_writable(out)


CLINICAL_KEYS = ("sensitivity", "specificity")  # of the abnormal group against the rest


def summarize(cfg: TrainConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    def row(m: dict[str, Any]) -> dict[str, Any]:
        ab = m.get("abnormal") or {}
        return {**{k: m[k] for k in (*METRIC_KEYS, "n")}, **{f"abnormal_{k}": ab.get(k) for k in CLINICAL_KEYS},
                "per_class": {c: {"recall": v["recall"], "precision": v["precision"]}
                              for c, v in (m.get("per_class") or {}).items()}}

    summary = {
        "model": cfg.model, "loss": cfg.loss, "folds": cfg.folds, "group_aware": cfg.groups, "epochs": cfg.epochs,
        "per_fold": [{"fold": r["fold"], **row(r["metrics"])} for r in results],
    }
    summary["mean_std"] = mean_std([r["metrics"] for r in results])
    summary["mean_std"].update({f"abnormal_{k}": _mean_std([f[f"abnormal_{k}"] for f in summary["per_fold"]])
                                for k in CLINICAL_KEYS})
    classes = list(summary["per_fold"][0]["per_class"]) if results else []
    summary["per_class_mean"] = {c: {k: _mean_std([f["per_class"][c][k] for f in summary["per_fold"]])["mean"]
                                     for k in ("recall", "precision")} for c in classes}
    return summary


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    vals = np.array([v for v in values if v is not None], dtype=float)
    return {"mean": float(vals.mean()), "std": float(vals.std())} if len(vals) else {"mean": None, "std": None}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def print_summary(summary: dict[str, Any]) -> None:
    """A table shaped like the paper's Table 2 (per fold, then mean +- std, in %), the abnormal group's
    sensitivity / specificity beside it, then per-class recall and precision (mean over folds)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{summary['model']} + {'hybrid loss' if summary['loss'] == 'hybrid' else 'cross-entropy'} "
                    f"({len(summary['per_fold'])} of {summary['folds']} folds, "
                    f"{'group-aware' if summary['group_aware'] else 'plain'} split)")
    t.add_column("fold")
    keys = (*METRIC_KEYS, *(f"abnormal_{k}" for k in CLINICAL_KEYS))
    for k in keys:
        t.add_column(f"{k.replace('abnormal_', 'abnormal ')} (%)", justify="right")
    for row in summary["per_fold"]:
        t.add_row(str(row["fold"]), *[_pct(row[k]) for k in keys])
    ms = summary["mean_std"]
    t.add_row("mean ± std", *[f"{_pct(ms[k]['mean'])} ± {_pct(ms[k]['std'])}" for k in keys])
    console = Console(width=140)
    console.print(t)
    pc = Table(title="per class, mean over folds (abnormal = koilocytotic + dyskeratotic vs the rest)")
    pc.add_column("class")
    pc.add_column("recall (%)", justify="right")
    pc.add_column("precision (%)", justify="right")
    for c, v in summary.get("per_class_mean", {}).items():
        pc.add_row(c, _pct(v["recall"]), _pct(v["precision"]))
    console.print(pc)


def random_init_hint(cfg: TrainConfig) -> str | None:
    """A note when a small learning rate (like the paper's, meant for ImageNet weights) meets random
    initialisation; it calls the rate the paper's only when it is (a tuned run.toml's is not)."""
    if cfg.pretrained or cfg.weights or cfg.lr > 1e-3:
        return None
    whose = " (the paper's, for ImageNet weights)" if cfg.lr == TrainConfig().lr else ""
    return (f"note: random initialisation with lr {cfg.lr:g}{whose} learns very slowly; "
            f"from scratch use e.g. --lr 0.02 --grad-clip 5 (README 'edge-train'), or --pretrained / --weights "
            f"(efficientnet_lite0's ImageNet weights install with the package)")


def check_initial_weights(cfg: TrainConfig) -> None:
    """Load the ImageNet weights asked for once before anything is written: a missing file is a one-line
    error that leaves no half-made run folder behind (and a download, when online, lands in the cache first)."""
    if cfg.init_from:  # the parent's architecture and embedding before a run folder is made
        from cytoedge.train.lineage import check_compatible, resolve_parent

        parent = resolve_parent(cfg.init_from)
        check_compatible(parent, cfg.model, cfg.embedding, None)
    if cfg.pretrained or cfg.weights:
        from cytoedge.train.models import create_model

        create_model(cfg.model, 2, pretrained=cfg.pretrained, weights=cfg.weights or None, embedding=cfg.embedding)


def with_lineage(cfg: TrainConfig, index: DatasetIndex) -> tuple[DatasetIndex, "Lineage | None"]:
    """``--init-from`` / ``--reviews``: the parent (checked against the data's classes) and the reviewed crops
    appended to the original samples (grouped by slide); None without either."""
    if not cfg.init_from and not cfg.reviews:
        return index, None
    from cytoedge.train.lineage import Lineage, check_compatible, read_reviews, resolve_parent

    parent = resolve_parent(cfg.init_from) if cfg.init_from else None
    if parent is not None:
        check_compatible(parent, cfg.model, cfg.embedding, index.class_names)
    reviews = read_reviews(cfg.reviews, index.class_names, Path(cfg.out)) if cfg.reviews else None
    if reviews is not None:
        index = DatasetIndex(index.root, index.layout, index.class_names, index.samples + reviews.samples,
                             index.frames, index.skipped, index.ignored_dirs)
        print(f"reviews: {len(reviews.samples)} reviewed crops from {len(reviews.slides)} slide(s) "
              f"({', '.join(f'{n} {c}' for c, n in reviews.per_class.items() if n)}), sha256 {reviews.sha256[:12]}")
    return index, Lineage(parent, reviews)


def run_training(cfg: TrainConfig, *, resume: bool = False, on_epoch: "EpochCallback | None" = None
                 ) -> dict[str, Any] | None:
    """Train the selected folds; returns the summary (on the main process) or None (other ranks).

    ``on_epoch`` is called after every epoch's validation (see :class:`train.loop.EpochEnd`);
    ``edge-train tune`` reports and prunes trials through it.
    """
    import torch

    from cytoedge.train.distributed import barrier, init_distributed, shutdown
    from cytoedge.train.folds import make_folds
    from cytoedge.train.loop import train_fold

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist, device = init_distributed(cfg.device)
    try:
        if dist.is_main:
            if not resume:
                check_initial_weights(cfg)
            prepare_run_folder(cfg, resume)
            atomic_write_json(Path(cfg.out) / CONFIG_FILE, cfg.to_dict())
        barrier(dist)
        index = limit_samples(scan_dataset(cfg.data), cfg.limit_per_class, cfg.seed)
        index, lineage = with_lineage(cfg, index)
        folds = make_folds(index.samples, index.class_names, cfg.folds, groups=cfg.groups, seed=cfg.seed)
        if dist.is_main:
            print(index.summary())
            print(f"training {cfg.model} with {cfg.loss} loss on {device} "
                  f"({dist.world_size} process{'es' if dist.enabled else ''}, {torch.get_num_threads()} threads)")
            hint = random_init_hint(cfg)
            if hint:
                print(hint)
        selected = range(cfg.folds) if cfg.fold < 0 else [cfg.fold]
        results = []
        for k in selected:
            fold_dir = Path(cfg.out) / f"fold_{k}"
            if resume and (fold_dir / "bundle.json").is_file() and (fold_dir / "metrics.json").is_file():
                if dist.is_main:
                    print(f"fold {k}: already complete, kept")
                    results.append({"fold": k, "metrics": json.loads((fold_dir / "metrics.json").read_text())})
                continue
            tr, va = folds[k]
            res = train_fold(cfg, index, k, tr, va, dist, device, resume, on_epoch, lineage)
            if dist.is_main:
                results.append({"fold": k, "metrics": res.metrics})
                print(f"fold {k}: accuracy {100 * res.metrics['accuracy']:.2f} %, bundle {res.directory}")
        if not dist.is_main:
            return None
        summary = summarize(cfg, results)
        atomic_write_json(Path(cfg.out) / SUMMARY_FILE, summary)
        print_summary(summary)
        return summary
    finally:
        shutdown(dist)
