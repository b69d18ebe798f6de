"""One fold: train with the hybrid loss, checkpoint every epoch, evaluate, write the bundle.

Reproducibility: every epoch reseeds torch / numpy / random from (seed, fold, epoch)
and draws its batch order from a generator seeded the same way, so a run resumed
from the checkpoint of epoch e continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from cytoedge.edge_app.classes import default_groups
from cytoedge.edge_app.preprocess import PreprocessSpec
from cytoedge.edge_app.rejection import fit_rejection
from cytoedge.train.bundle import Bundle, load_torch_file, write_bundle
from cytoedge.train.config import TrainConfig
from cytoedge.train.data.dataset import CellDataset
from cytoedge.train.data.samplers import PKBatchSampler
from cytoedge.train.data.sipakmed import DatasetIndex
from cytoedge.train.data.transforms import Augmentation
from cytoedge.train.distributed import DistInfo, barrier
from cytoedge.train.errors import CheckpointError, TrainingDivergedError
from cytoedge.train.losses import HybridLoss, outlier_exposure_loss
from cytoedge.train.metrics import classification_metrics, same_scores_for_every_image
from cytoedge.train.models import create_model, get_model_info

if TYPE_CHECKING:
    from cytoedge.train.lineage import Lineage

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class EpochEnd:
    """What an ``on_epoch`` callback sees after each epoch's validation (main process only).

    The callback runs after the epoch's checkpoint is written; an exception it raises (e.g.
    ``optuna.TrialPruned``) stops the fold there and propagates out of :func:`train_fold`.
    """

    fold: int
    epoch: int  # 0-based
    epochs: int
    stats: dict[str, float]  # the epoch's history entry (losses, accuracies, lr, speed)
    val_logits: np.ndarray  # N x classes, the validation images in order
    val_labels: np.ndarray
    class_names: list[str]


EpochCallback = Callable[[EpochEnd], None]


@dataclass
class FoldResult:
    fold: int
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    directory: Path


def seed_everything(*parts: int) -> None:
    s = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


def preprocess_spec(cfg: TrainConfig) -> PreprocessSpec:
    """Size and normalisation of the model input; it goes into the bundle, the model card and the device.

    mean/std: the config's when set, else the model's own (EfficientNet-Lite0's weights expect 0.5 / 0.5)."""
    info = get_model_info(cfg.model)
    return PreprocessSpec(size=cfg.input_size, resize=cfg.resize or cfg.input_size,
                          mean=tuple(cfg.mean) if cfg.mean else info.mean,
                          std=tuple(cfg.std) if cfg.std else info.std)


def augmentation(cfg: TrainConfig) -> Augmentation:
    return Augmentation(rotation=cfg.rotation, hflip=cfg.hflip, brightness=cfg.brightness, contrast=cfg.contrast,
                        saturation=cfg.saturation, hue=cfg.hue)


def _loader(cfg: TrainConfig, ds: CellDataset, fold: int, epoch: int, dist: DistInfo) -> DataLoader:
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, fold, epoch, 7]).generate_state(1)[0]))
    common = dict(num_workers=cfg.workers, generator=g, persistent_workers=False)
    if cfg.sampler == "pk":
        bs = PKBatchSampler(ds.labels, cfg.pk_classes, cfg.pk_images, seed=cfg.seed * 1000 + fold,
                            rank=dist.rank, world_size=dist.world_size)
        bs.set_epoch(epoch)
        return DataLoader(ds, batch_sampler=bs, **common)
    if dist.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=cfg.seed * 1000 + fold, drop_last=True)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(ds, generator=g)
    # drop_last: a batch of one breaks BatchNorm and holds no triplet (kept when it is the only batch)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=len(sampler) > cfg.batch_size,
                      **common)


def negatives_dataset(cfg: TrainConfig, spec: PreprocessSpec) -> CellDataset | None:
    """The non-cell crops of ``--negatives`` (outlier exposure), augmented like the cells; None when off."""
    if not cfg.negatives:
        return None
    from cytoedge.edge_app.crops import crop_files
    from cytoedge.train.data.sipakmed import Sample

    files = crop_files([cfg.negatives])
    return CellDataset([Sample(f, -1, f"negatives/{f.parent.name}") for f in files], spec, train=True)


def _negative_batches(cfg: TrainConfig, ds: CellDataset, fold: int, epoch: int, dist: DistInfo, batches: int):
    """An endless, seeded stream of non-cell batches (drawn with replacement), half a batch each."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, fold, epoch, 11, dist.rank]).generate_state(1)[0]))
    n = max(1, cfg.batch_size // 2)
    sampler = RandomSampler(ds, replacement=True, num_samples=n * max(1, batches), generator=g)
    return iter(DataLoader(ds, batch_size=n, sampler=sampler, num_workers=cfg.workers))


@torch.no_grad()
def predict(model: torch.nn.Module, ds: CellDataset, device: torch.device, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of every image of ``ds`` (evaluation transform, in order)."""
    model.eval()
    logits, embs = [], []
    for x, _, _ in DataLoader(ds, batch_size=batch, shuffle=False):
        lo, em = model(x.to(device))
        logits.append(lo.float().cpu())
        embs.append(em.float().cpu())
    return torch.cat(logits).numpy(), torch.cat(embs).numpy()


def constant_output_warning(logits: np.ndarray, cfg: TrainConfig) -> str | None:
    """A warning when the model gives every image the same scores (dead units: learning has stopped), else None.

    A ReLU in front of the logits does this once all its inputs turn negative (torchvision's SqueezeNet
    head had one; ours does not): no gradient flows, the loss sits at ln(classes), the run cannot recover.
    """
    if not same_scores_for_every_image(logits):
        return None
    return (f"warning: the model gives every image the same scores (CE = ln {logits.shape[1]}: dead units), "
            f"training cannot recover; use a lower --lr (now {cfg.lr:g}), --pretrained / --weights, or another --model")


def _save_checkpoint(path: Path, model: torch.nn.Module, opt: Any, sched: Any, epoch: int,
                     history: list[dict[str, float]]) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "history": history}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _resume_from(path: Path, model: torch.nn.Module, opt: Any, sched: Any, fold: int) -> tuple[list[dict], int]:
    """Load a checkpoint into model, optimiser and scheduler: (history, next epoch); a bad file is one line."""
    remedy = f"delete it to train fold {fold} again from its first epoch, or restore it from a backup"
    ck = load_torch_file(path, CheckpointError, "checkpoint", remedy)
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        return list(ck["history"]), int(ck["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        first = (" ".join(str(exc).split()) or type(exc).__name__)[:120]
        raise CheckpointError(f"checkpoint {path} is not one edge-train wrote for this run ({type(exc).__name__}: "
                              f"{first}): {remedy}") from None


def _write_predictions(path: Path, ds: CellDataset, root: Path, logits: np.ndarray, class_names: list[str]) -> None:
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["path", "group", "true", "pred", *[f"p_{c}" for c in class_names]])
    for s, p in zip(ds.samples, probs):
        rel = s.path.relative_to(root) if s.path.is_relative_to(root) else s.path
        w.writerow([str(rel), s.group, class_names[s.label], class_names[int(p.argmax())], *[f"{v:.6f}" for v in p]])
    atomic_write_text(path, out.getvalue())


def train_fold(cfg: TrainConfig, index: DatasetIndex, fold: int, train_idx: np.ndarray, val_idx: np.ndarray,
               dist: DistInfo, device: torch.device, resume: bool, on_epoch: EpochCallback | None = None,
               lineage: "Lineage | None" = None) -> FoldResult:
    from tqdm import tqdm

    from cytoedge.train.plots import plot_confusion, plot_curves

    fold_dir = Path(cfg.out) / f"fold_{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    names = index.class_names
    spec = preprocess_spec(cfg)
    train_samples = [index.samples[i] for i in train_idx]
    if lineage is not None and cfg.review_repeat > 1:  # reviewed crops seen more often than the original data
        reviewed = lineage.review_paths()
        train_samples += [s for s in train_samples if s.path in reviewed] * (cfg.review_repeat - 1)
    val_samples = [index.samples[i] for i in val_idx]
    cache: dict[int, np.ndarray] = {}
    train_ds = CellDataset(train_samples, spec, train=True, cache=cache, augmentation=augmentation(cfg))
    val_ds = CellDataset(val_samples, spec, train=False)

    seed_everything(cfg.seed, fold)
    model = create_model(cfg.model, len(names), pretrained=cfg.pretrained, weights=cfg.weights or None,
                         embedding=cfg.embedding).to(device)
    if lineage is not None and lineage.parent is not None:
        from cytoedge.train.lineage import load_parent_weights

        load_parent_weights(model, lineage.parent)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          dampening=cfg.dampening)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.gamma)
    crit = HybridLoss(lam=cfg.lam if cfg.loss == "hybrid" else 0.0, margin=cfg.margin,
                      label_smoothing=cfg.label_smoothing, mining=cfg.mining)
    neg_ds = negatives_dataset(cfg, spec)
    history: list[dict[str, float]] = []
    start = 0
    ckpt_path = fold_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        history, start = _resume_from(ckpt_path, model, opt, sched, fold)
        if dist.is_main:
            print(f"fold {fold}: resuming after epoch {start} of {cfg.epochs}")

    net: torch.nn.Module = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    for epoch in range(start, cfg.epochs):
        seed_everything(cfg.seed, fold, epoch)
        net.train()
        t0 = time.perf_counter()
        tot = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "oe": 0.0, "correct": 0, "n": 0}
        loader = _loader(cfg, train_ds, fold, epoch, dist)
        negs = _negative_batches(cfg, neg_ds, fold, epoch, dist, len(loader)) if neg_ds is not None else None
        bar = tqdm(loader, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, unit="batch",
                   disable=None if (cfg.progress and dist.is_main) else True)  # None: off when stderr is not a terminal (logs)
        for x, y, _ in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            n_in = len(y)
            if negs is not None:  # one forward over cells + non-cells (shared BatchNorm statistics, as in OE)
                x = torch.cat([x, next(negs)[0].to(device, non_blocking=True)])
            with torch.autocast(device.type, enabled=use_amp):
                logits, emb = net(x)
            parts = crit(logits[:n_in].float(), emb[:n_in].float(), y)
            if negs is not None:
                oe = outlier_exposure_loss(logits[n_in:].float())
                parts.total = parts.total + cfg.oe_weight * oe
                tot["oe"] += oe.item() * n_in
                logits = logits[:n_in]
            loss_value = parts.total.item()
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"fold {fold} epoch {epoch + 1}: the loss became {loss_value} (ce {parts.ce.item():.3g}, "
                    f"triplet {parts.triplet.item():.3g}); lower --lr or set --grad-clip (nothing was written for this epoch)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(parts.total).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            n = len(y)
            tot["loss"] += loss_value * n
            tot["ce"] += parts.ce.item() * n
            tot["triplet"] += parts.triplet.item() * n
            tot["correct"] += int((logits.argmax(1) == y).sum())
            tot["n"] += n
            bar.set_postfix(loss=f"{loss_value:.3f}")
        sched.step()
        train_secs = time.perf_counter() - t0
        if dist.enabled:  # sum the per-rank counters so rank 0 reports the whole epoch
            keys = ("loss", "ce", "triplet", "oe", "correct", "n")
            t = torch.tensor([tot[k] for k in keys], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(t)
            tot = dict(zip(keys, t.tolist()))
        if dist.is_main:
            v_logits, _ = predict(model, val_ds, device)
            v_true = val_ds.labels
            v_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(v_logits), torch.from_numpy(v_true)))
            v_acc = float((v_logits.argmax(1) == v_true).mean())
            n = max(tot["n"], 1)
            history.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": tot["loss"] / n,
                            "train_ce": tot["ce"] / n, "train_triplet": tot["triplet"] / n, "train_oe": tot["oe"] / n,
                            "train_acc": tot["correct"] / n, "train_images": int(tot["n"]), "val_loss": v_loss, "val_acc": v_acc,
                            "train_seconds": train_secs, "train_images_per_s": tot["n"] / max(train_secs, 1e-9)})
            print(f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: loss {tot['loss'] / n:.4f} "
                  f"(ce {tot['ce'] / n:.4f}, triplet {tot['triplet'] / n:.4f}"
                  + (f", oe {tot['oe'] / n:.4f}" if neg_ds is not None else "") + f") train acc {tot['correct'] / n:.3f} "
                  f"val acc {v_acc:.3f}  {tot['n'] / max(train_secs, 1e-9):.1f} img/s", flush=True)
            stuck = constant_output_warning(v_logits, cfg)
            if stuck:
                print(f"fold {fold} epoch {epoch + 1}: {stuck}", flush=True)
            _save_checkpoint(ckpt_path, model, opt, sched, epoch, history)
            if on_epoch is not None:
                on_epoch(EpochEnd(fold, epoch, cfg.epochs, history[-1], v_logits, v_true, names))
        barrier(dist)

    if not dist.is_main:
        return FoldResult(fold, {}, history, fold_dir)

    # -- final evaluation and the bundle ------------------------------------------------
    v_logits, _ = predict(model, val_ds, device)
    metrics = classification_metrics(val_ds.labels, v_logits.argmax(1), names)
    train_eval = CellDataset(train_samples, spec, train=False, cache=cache)
    _, t_emb = predict(model, train_eval, device)
    cents, thr = fit_rejection(t_emb, train_eval.labels, len(names), cfg.threshold_quantile)

    _write_predictions(fold_dir / "predictions.csv", val_ds, index.root, v_logits, names)
    atomic_write_json(fold_dir / "metrics.json", metrics)
    atomic_write_json(fold_dir / "confusion_matrix.json", {"class_names": names, "matrix": metrics["confusion_matrix"]})
    atomic_write_json(fold_dir / "history.json", history)
    title = f"{cfg.model} ({cfg.loss}) fold {fold}"
    plot_confusion(metrics["confusion_matrix"], names, fold_dir / "confusion_matrix.png", title)
    plot_curves(history, fold_dir / "curves.png", title)

    # reviewed crops live outside the data root: their absolute path (root / absolute = absolute)
    rel = lambda s: str(s.path.relative_to(index.root) if s.path.is_relative_to(index.root) else s.path)  # noqa: E731
    split = {"root": str(index.root.resolve()),
             "train": [[rel(s), s.label, s.group] for s in train_samples],
             "val": [[rel(s), s.label, s.group] for s in val_samples]}
    bundle = Bundle(architecture=cfg.model, class_names=names, class_groups=default_groups(names), preprocessing=spec,
                    embedding_dim=get_model_info(cfg.model).embedding_dim, embedding=cfg.embedding,
                    centroids=cents.tolist(), threshold=thr,
                    threshold_quantile=cfg.threshold_quantile, config=cfg.to_dict(), fold=fold, folds=cfg.folds,
                    metrics={k: metrics[k] for k in ("accuracy", "precision", "recall", "specificity", "f1", "n",
                                                     "abnormal")},
                    lineage=lineage.record(cfg.review_repeat) if lineage is not None else {})
    write_bundle(fold_dir, bundle, model.state_dict(), split)
    return FoldResult(fold, metrics, history, fold_dir)
