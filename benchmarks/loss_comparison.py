"""Training variants side by side over several seeds: accuracy (mean +- std), confusions, held-out rejection.

    python -m cytoedge.benchmarks.loss_comparison --data D --heldout H --out OUT --seeds 0 1 2 \\
        --variant "ce: --loss ce" --variant "hybrid: --lam 1" \\
        -- --model efficientnet_lite0 --pretrained --input-size 128 --folds 2 --fold 0 --epochs 4 --lr 0.01

Every variant is ``NAME: edge-train flags``; the flags after ``--`` are shared by all variants
(a variant's own flags win). Each (variant, seed) is one ``edge-train`` run in ``OUT/NAME/seed_S``
(``--seed S``: folds, initialisation, batch order and augmentation change with it); a run that
finished is reused, a killed one resumed, so the command can be rerun. Each bundle is scored on
its fold's validation images and on ``--heldout`` (a tree generated with another seed: images
from other frames, which no run saw), with PyTorch. The table gives mean +- sample std over the
seeds, the share of held-out crops beyond the bundle's own "unknown" threshold (centroids and
threshold in the embedding space the run trained), and training time per run. The confusion
table gives, for the class pairs the first variant (the baseline) confuses most, how many of
the two classes' held-out crops were called the other class (summed over seeds).

Writes ``OUT/results.json`` and ``OUT/results.md`` (both tables and the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Variant:
    name: str
    flags: list[str]


def parse_variant(text: str) -> Variant:
    name, sep, flags = text.partition(":")
    if not sep or not name.strip() or "/" in name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: write it as 'NAME: edge-train flags'")
    return Variant(name.strip(), shlex.split(flags))


def variant_config(shared: list[str], variant: Variant, seed: int, out: Path) -> Any:
    """The resolved TrainConfig of one run: shared flags, then the variant's, then seed and folder."""
    from dataclasses import fields

    from cytoedge.train.cli import get_parser
    from cytoedge.train.config import TrainConfig, resolve_config

    args = get_parser().parse_args([*shared, *variant.flags])
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    values.update(seed=seed, out=str(out), progress=False)
    return resolve_config({}, values).validate()


def score_heldout(fold_dir: Path, heldout: Path) -> dict[str, Any]:
    """Accuracy, macro-F1, confusion matrix and unknown rate of a bundle on a held-out tree (PyTorch, CPU)."""
    import torch

    from cytoedge.edge_app.rejection import nearest_centroid
    from cytoedge.train.bundle import read_bundle
    from cytoedge.train.data.dataset import CellDataset
    from cytoedge.train.data.sipakmed import scan_dataset
    from cytoedge.train.loop import predict
    from cytoedge.train.metrics import classification_metrics

    bundle = read_bundle(fold_dir)
    index = scan_dataset(heldout)
    names = bundle.class_names
    missing = sorted(set(index.class_names) - set(names))
    if missing:
        raise SystemExit(f"loss_comparison: --heldout has classes the model does not know: {', '.join(missing)}")
    samples = [replace(s, label=names.index(index.class_names[s.label])) for s in index.samples]
    ds = CellDataset(samples, bundle.preprocessing, train=False, cache=False)
    logits, emb = predict(bundle.load_model(), ds, torch.device("cpu"))
    m = classification_metrics(ds.labels, logits.argmax(1), names)
    _, dist = nearest_centroid(emb, np.asarray(bundle.centroids))
    return {"accuracy": m["accuracy"], "f1": m["f1"], "confusion_matrix": m["confusion_matrix"], "n": m["n"],
            "unknown_rate": float((dist > bundle.threshold).mean())}


def run_one(cfg: Any, heldout: Path) -> dict[str, Any]:
    from cytoedge.train.run import CONFIG_FILE, SUMMARY_FILE, run_training

    out = Path(cfg.out)
    result_file = out / "comparison.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    t0 = time.perf_counter()
    if not (out / SUMMARY_FILE).is_file():
        run_training(cfg, resume=(out / CONFIG_FILE).is_file())
    wall = time.perf_counter() - t0
    fold = cfg.fold if cfg.fold >= 0 else 0
    fold_dir = out / f"fold_{fold}"
    metrics = json.loads((fold_dir / "metrics.json").read_text())
    history = json.loads((fold_dir / "history.json").read_text())
    res = {"seed": cfg.seed, "val_accuracy": metrics["accuracy"], "val_f1": metrics["f1"],
           "train_seconds": sum(h["train_seconds"] for h in history), "wall_seconds": wall,
           "final_train_triplet": history[-1]["train_triplet"], "final_train_ce": history[-1]["train_ce"],
           "heldout": score_heldout(fold_dir, heldout), "config": cfg.to_dict()}
    from cytoedge.edge_app.atomic import atomic_write_json

    atomic_write_json(result_file, res)
    return res


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    v = np.asarray(values, float) * scale
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def summarize(results: dict[str, list[dict[str, Any]]], class_names: list[str], top_pairs: int = 3) -> str:
    lines = ["| variant | runs | validation acc. % | held-out acc. % | held-out macro-F1 % | held-out unknown % "
             "| train s / run | final triplet term |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, runs in results.items():
        lines.append(f"| {name} | {len(runs)} | {_ms([r['val_accuracy'] for r in runs])} "
                     f"| {_ms([r['heldout']['accuracy'] for r in runs])} | {_ms([r['heldout']['f1'] for r in runs])} "
                     f"| {_ms([r['heldout']['unknown_rate'] for r in runs])} "
                     f"| {np.mean([r['train_seconds'] for r in runs]):.0f} "
                     f"| {np.mean([r['final_train_triplet'] for r in runs]):.3f} |")
    cms = {name: np.sum([np.asarray(r["heldout"]["confusion_matrix"]) for r in runs], axis=0)
           for name, runs in results.items()}
    base = next(iter(cms.values()))  # the first variant (the baseline) names the confusable pairs
    k = len(class_names)
    pairs = sorted(((base[i, j] + base[j, i], i, j) for i in range(k) for j in range(i + 1, k)), reverse=True)
    pairs = [(i, j) for _, i, j in pairs[:top_pairs]]
    lines += ["", "| variant | " + " | ".join(f"{class_names[i]} ↔ {class_names[j]}" for i, j in pairs) + " |",
              "| --- |" + " ---: |" * len(pairs)]
    for name, cm in cms.items():
        cells = []
        for i, j in pairs:
            wrong, n = int(cm[i, j] + cm[j, i]), int(cm[i].sum() + cm[j].sum())
            cells.append(f"{wrong} / {n} ({100 * wrong / max(n, 1):.1f} %)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    shared: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, shared = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.loss_comparison", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training tree (edge-train --data)")
    p.add_argument("--heldout", required=True, help="a tree no run trains on (e.g. edge-train synth --seed 1)")
    p.add_argument("--out", required=True, help="folder for the runs, results.json and results.md")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variant", type=parse_variant, action="append", required=True, metavar="'NAME: FLAGS'")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)
    import platform

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, list[dict[str, Any]]] = {}
    names: list[str] = []
    for v in args.variant:
        for seed in args.seeds:
            cfg = variant_config(["--data", args.data, *shared], v, seed, out / v.name / f"seed_{seed}")
            r = run_one(cfg, Path(args.heldout))
            results.setdefault(v.name, []).append(r)
            names = json.loads((Path(cfg.out) / f"fold_{max(cfg.fold, 0)}" / "bundle.json").read_text())["class_names"]
            print(f"loss_comparison: {v.name} seed {seed}: validation {100 * r['val_accuracy']:.1f} %, held-out "
                  f"{100 * r['heldout']['accuracy']:.1f} %, {r['train_seconds']:.0f} s training", flush=True)
    table = summarize(results, names)
    command = "python -m cytoedge.benchmarks.loss_comparison " + shlex.join(sys.argv[1:] if argv is None else [*argv, "--", *shared])
    host = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    from cytoedge.edge_app.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out / "results.json", {"command": command, "host": host, "shared": shared,
                                             "variants": {v.name: v.flags for v in args.variant}, "results": results})
    atomic_write_text(out / "results.md", f"{command}\n\n{host}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
