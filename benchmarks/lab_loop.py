"""The lab's loop, measured: what N reviewed cells of another lab's slides buy a model trained elsewhere.

    make demo                                        # lab A's data and model (demo/data, demo/models/lite0)
    python -m cytoedge.benchmarks.lab_loop           # lab B sets, queue orders, fine-tunes, plot -> demo/lab
    python -m cytoedge.benchmarks.lab_loop --n 50 200 --orders learning random   # a reduced grid

1. Lab B's slides (``edge-train synth --lab b``): a *pool* of fields the lab reviews from and held-out *test*
   fields; the same test fields as lab A photographs them (same seed, ``--lab a``); lab B training data for the
   ceiling. Every field goes through the device's cell finder; a detection matched to a labelled cell (mask
   IoU >= 0.5) is a labelled finder crop. Five fields make a slide.
2. The parent (lab A's model) scores the pool with its int8 artifact (calibrated probabilities); three queue
   orders: ``learning`` (margin, spread over slides and classes: :mod:`edge_app.review_order`), ``suspicion``
   (highest calibrated abnormal probability first: a stand-in for the slide-verdict queue, which this branch does
   not hold) and ``random``.
3. For each order and N the top N cells get the generator's true label and are written as edge-app
   export-reviews writes them; ``edge-train --init-from PARENT --reviews ... --data LAB_A`` fine-tunes; the new
   bundle is scored on lab B's held-out finder crops with PyTorch through the device's preprocessing
   (held equal to the int8 path by tests/train/test_transforms.py; ``--convert`` also converts the N=200
   learning model and scores its int8 file).
4. The ceiling: the parent's recipe trained on lab B from the start (ImageNet weights, 4 epochs).

Figures: accuracy, abnormal sensitivity / specificity and the mean slide-estimate error (|predicted - true
abnormal share of a slide's cells|, raw counts) against N, per order; printed, in ``lab_loop.json`` and
``lab_loop.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.classes import default_groups
from cytoedge.edge_app.errors import CytoEdgeError

FIELDS_PER_SLIDE = 5
ORDERS = ("learning", "suspicion", "random")
MANIFEST = "cytoedge-reviews.csv"
# one epoch over half of 50 original crops per class (2 cluster frames each: whole groups) and every reviewed crop
# of the training half's slides twice; what fits the shared 2-core machine (docs/lab-loop.md)
FINE_TUNE = ["--epochs", "1", "--lr", "0.003", "--folds", "2", "--fold", "0", "--limit-per-class", "50",
             "--review-repeat", "2", "--no-progress"]
POOL_FIELDS_PER_SLIDE = 1  # the pool's slides are small: the folds split reviews by slide, so more of them
CEILING = ["--model", "efficientnet_lite0", "--pretrained", "--input-size", "128", "--folds", "2", "--fold", "0",
           "--epochs", "4", "--lr", "0.01", "--no-progress"]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _sh(argv: list[str], log: Path) -> None:
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        raise CytoEdgeError(f"{' '.join(argv[:3])} ... failed (exit {rc}): see {log}")
    print(f"  {Path(argv[0]).name} {' '.join(argv[1:3])} ... {time.perf_counter() - t0:.0f} s", flush=True)


def make_sets(work: Path, scale: float, log: Path) -> dict[str, Path]:
    """Lab B's pool / test / training trees and lab A's copy of the test fields (skipped when present); ``scale``
    1 is the demo's (40 pool fields, 30 test fields, 200 training crops per class)."""
    f = lambda n: str(max(FIELDS_PER_SLIDE, round(n * scale)))  # noqa: E731
    sets = {"b-pool": ("b", "21", ["--fields", f(40), "--per-class", "5", "--frames", "1"]),
            "b-test": ("b", "22", ["--fields", f(30), "--per-class", "5", "--frames", "1"]),
            "a-test": ("a", "22", ["--fields", f(30), "--per-class", "5", "--frames", "1"]),
            "b-train": ("b", "23", ["--per-class", str(max(20, round(200 * scale))), "--frames", "8"])}
    out = {}
    for name, (lab, seed, extra) in sets.items():
        out[name] = work / name
        if not (out[name] / "synth.json").is_file():
            _sh([_bin("edge-train"), "synth", "--out", str(out[name]), "--lab", lab, "--seed", seed,
                 "--non-cells", "0", *extra], log)
    return out


def finder_set(fields: Path, per_slide: int = FIELDS_PER_SLIDE) -> dict[str, Any]:
    """Labelled finder crops of a synthetic tree's fields, with their slide (``per_slide`` fields a slide)."""
    from cytoedge.benchmarks.finder_accuracy import labelled_finder_crops

    cache = fields.with_name(fields.name + ".finder-crops.npz")  # the finder's crops, kept for a rerun (the fields never change)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            rows = [(f, t, z[f"c{k}"]) for k, (f, t) in enumerate(zip(z["field"].tolist(), z["truth"].tolist()))]
    else:
        rows = labelled_finder_crops(fields / "fields")
        np.savez(cache, field=np.array([r[0] for r in rows]), truth=np.array([r[1] for r in rows]),
                 **{f"c{k}": r[2] for k, r in enumerate(rows)})
    names = sorted({r[0] for r in rows})
    slide_of = {n: f"slide-{i // per_slide + 1:02d}" for i, n in enumerate(names)}
    return {"slides": [slide_of[r[0]] for r in rows], "truth": [r[1] for r in rows], "crops": [r[2] for r in rows]}


def device_probs(model: Path, crops: list[np.ndarray], threads: int) -> tuple[np.ndarray, list[str]]:
    """Calibrated probabilities of the card's int8 artifact (softmax of logits / temperature), and the classes."""
    from cytoedge.edge_app.classifier import Classifier

    clf = Classifier(model, "tflite-int8", threads=threads)
    logits = np.concatenate([clf.raw_outputs(crops[i:i + 32])[0] for i in range(0, len(crops), 32)])
    z = logits / clf.temperature
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True), list(clf.class_names)


def bundle_probs(bundle: Path, crops: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Softmax of a bundle's PyTorch logits on crops through the device's preprocessing."""
    import torch

    from cytoedge.edge_app.preprocess import preprocess_batch
    from cytoedge.train.bundle import read_bundle

    b = read_bundle(bundle)
    net = b.load_model()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 64):
            x = torch.from_numpy(preprocess_batch(crops[i:i + 64], b.preprocessing).transpose(0, 3, 1, 2).copy())
            out.append(torch.softmax(net(x)[0], 1).numpy())
    return np.concatenate(out), list(b.class_names)


def metrics(probs: np.ndarray, names: list[str], truth: list[str], slides: list[str]) -> dict[str, float]:
    groups = default_groups(names)
    pred = [names[i] for i in probs.argmax(1)]
    ab_t = np.array([groups[t] == "abnormal" for t in truth])
    ab_p = np.array([groups[p] == "abnormal" for p in pred])
    err = []
    for s in sorted(set(slides)):
        m = np.array([x == s for x in slides])
        err.append(abs(ab_p[m].mean() - ab_t[m].mean()))
    return {"accuracy": float(np.mean([p == t for p, t in zip(pred, truth)])),
            "sensitivity": float(ab_p[ab_t].mean()), "specificity": float((~ab_p[~ab_t]).mean()),
            "slide_error": float(np.mean(err)), "n": len(truth)}


def queue(order: str, probs: np.ndarray, names: list[str], slides: list[str], seed: int) -> list[int]:
    from cytoedge.edge_app.review_order import doubt, learning_order, suspicion_order

    if order == "learning":
        return learning_order(slides, [names[i] for i in probs.argmax(1)], doubt(probs))
    if order == "suspicion":
        ab = [i for i, n in enumerate(names) if default_groups(names)[n] == "abnormal"]
        return suspicion_order(probs[:, ab].sum(1))
    return np.random.default_rng(seed).permutation(len(slides)).tolist()


def write_reviews(dest: Path, pool: dict[str, Any], picked: Sequence[int]) -> Path:
    """The picked pool cells, labelled with the generator's truth, as edge-app export-reviews writes them."""
    import cv2

    if dest.exists():
        shutil.rmtree(dest)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "cell", "slide", "frame", "model_label", "model_group", "confidence", "label", "reviewer",
                "reviewed", "note"])
    for i in picked:
        label = pool["truth"][i]
        rel = f"{label}/{i // 1000}_{i}.png"
        (dest / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest / rel), pool["crops"][i])
        w.writerow([rel, i, pool["slides"][i], "", "", "", "", label, "generator truth", "", ""])
    (dest / MANIFEST).write_text(buf.getvalue())
    return dest


def fine_tune(parent: Path, lab_a: Path, reviews: Path, out: Path, threads: int, log: Path) -> Path:
    if not (out / "fold_0" / "bundle.json").is_file():
        if out.exists():
            shutil.rmtree(out)
        _sh([_bin("edge-train"), "--init-from", str(parent), "--reviews", str(reviews), "--data", str(lab_a),
             "--out", str(out), "--threads", str(threads), *FINE_TUNE], log)
    return out / "fold_0"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("accuracy", "accuracy"), ("sensitivity", "abnormal sensitivity"),
            ("specificity", "abnormal specificity"), ("slide_error", "slide-estimate error"))
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (k, title) in zip(axes, keys):
        for order, rows in res["orders"].items():
            ns = sorted(int(n) for n in rows)
            ax.plot([0, *ns], [res["parent_b"][k], *[rows[str(n)][k] for n in ns]], "o-", label=order, ms=4)
        ax.axhline(res["ceiling_b"][k], color="k", ls="--", lw=1, label="lab B from the start")
        ax.axhline(res["parent_a"][k], color="0.6", ls=":", lw=1, label="lab A model on lab A")
        ax.set(title=title, xlabel="reviewed lab B cells (N)")
    axes[0].legend(fontsize=7)
    fig.suptitle("lab A model fine-tuned on N reviewed lab B cells, scored on held-out lab B finder crops", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lab_stats(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of CIE L*a*b* (OpenCV, float) over whole fields."""
    import cv2

    lab = np.concatenate([cv2.cvtColor(im.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB).reshape(-1, 3)
                          for im in images])
    return lab.mean(0), lab.std(0)


def reinhard(image: np.ndarray, ref: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Reinhard et al. 2001 colour transfer of a whole field to the reference statistics, in L*a*b*."""
    import cv2

    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    m, s = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-6
    out = cv2.cvtColor(((lab - m) / s * ref[1] + ref[0]).astype(np.float32), cv2.COLOR_LAB2BGR)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def reinhard_copy(tree: Path, reference_fields: Path, dest: Path) -> Path:
    """The tree's fields, each normalised to the reference fields' colour statistics (outlines and truth kept)."""
    import cv2

    if (dest / "fields" / "truth.json").is_file():
        return dest
    ref = lab_stats([cv2.imread(str(p)) for p in sorted(reference_fields.glob("field_*.png"))])
    (dest / "fields").mkdir(parents=True, exist_ok=True)
    for f in sorted((tree / "fields").iterdir()):
        if f.suffix == ".png":
            cv2.imwrite(str(dest / "fields" / f.name), reinhard(cv2.imread(str(f)), ref))
        elif f.name != "truth.json":
            shutil.copy2(f, dest / "fields" / f.name)
    shutil.copy2(tree / "fields" / "truth.json", dest / "fields" / "truth.json")
    return dest


def run(parent: Path, lab_a: Path, work: Path, ns: Sequence[int], orders: Sequence[str], threads: int, seed: int,
        convert: bool, scale: float = 1.0) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "lab_loop.log"
    t0 = time.perf_counter()
    sets = make_sets(work, scale, log)
    pool = finder_set(sets["b-pool"], POOL_FIELDS_PER_SLIDE)
    test_b, test_a = (finder_set(sets[k]) for k in ("b-test", "a-test"))
    reference = lab_a / "fields" if (lab_a / "fields" / "truth.json").is_file() else sets["a-test"] / "fields"
    test_b_reinhard = finder_set(reinhard_copy(sets["b-test"], reference, work / "b-test-reinhard"))
    print(f"finder crops: pool {len(pool['truth'])}, lab B test {len(test_b['truth'])}, lab A test "
          f"{len(test_a['truth'])}", flush=True)
    res: dict[str, Any] = {"parent": str(parent), "pool": len(pool["truth"]), "test": len(test_b["truth"]),
                           "scale": scale, "orders": {}}
    p_pool, names = device_probs(parent, pool["crops"], threads)
    pa, _ = device_probs(parent, test_a["crops"], threads)
    pb, _ = device_probs(parent, test_b["crops"], threads)
    res["parent_a"] = metrics(pa, names, test_a["truth"], test_a["slides"])
    res["parent_b"] = metrics(pb, names, test_b["truth"], test_b["slides"])
    pr, _ = device_probs(parent, test_b_reinhard["crops"], threads)
    res["parent_b_reinhard"] = metrics(pr, names, test_b_reinhard["truth"], test_b_reinhard["slides"])
    print(f"parent int8: lab A {res['parent_a']['accuracy']:.3f}, lab B {res['parent_b']['accuracy']:.3f}, lab B "
          f"after Reinhard to lab A's fields {res['parent_b_reinhard']['accuracy']:.3f}", flush=True)
    ceiling = work / "ceiling"
    if not (ceiling / "fold_0" / "bundle.json").is_file():
        shutil.rmtree(ceiling, ignore_errors=True)
        _sh([_bin("edge-train"), "--data", str(sets["b-train"]), "--out", str(ceiling), "--threads", str(threads),
             *CEILING], log)
    res["ceiling_b"] = metrics(bundle_probs(ceiling / "fold_0", test_b["crops"])[0], names, test_b["truth"],
                               test_b["slides"])
    res["parent_b_torch"] = metrics(bundle_probs(parent / "bundle", test_b["crops"])[0], names, test_b["truth"],
                                    test_b["slides"])
    print(f"ceiling (lab B from the start, torch): {res['ceiling_b']['accuracy']:.3f}", flush=True)
    for order in orders:
        ranked = queue(order, p_pool, names, pool["slides"], seed)
        rows = res["orders"].setdefault(order, {})
        for n in ns:
            if n > len(ranked):
                print(f"  N={n} > pool {len(ranked)}: skipped", flush=True)
                continue
            reviews = write_reviews(work / "reviews" / f"{order}-{n}", pool, ranked[:n])
            bundle = fine_tune(parent, lab_a, reviews, work / "runs" / f"{order}-{n}", threads, log)
            rows[str(n)] = metrics(bundle_probs(bundle, test_b["crops"])[0], names, test_b["truth"], test_b["slides"])
            rows[str(n)]["reviewed_classes"] = {c: sum(pool["truth"][i] == c for i in ranked[:n]) for c in names}
            print(f"  {order:9s} N={n:4d}: accuracy {rows[str(n)]['accuracy']:.3f}, sens "
                  f"{rows[str(n)]['sensitivity']:.3f}, spec {rows[str(n)]['specificity']:.3f}, slide error "
                  f"{rows[str(n)]['slide_error']:.3f}", flush=True)
            if convert and order == "learning" and n == 200:
                model = work / "models" / f"{order}-{n}"
                shutil.rmtree(model, ignore_errors=True)
                _sh([_bin("edge-convert"), str(bundle), "--int8", "--out", str(model)], log)
                res["converted_learning_200_int8"] = metrics(device_probs(model, test_b["crops"], threads)[0], names,
                                                             test_b["truth"], test_b["slides"])
    gap = res["ceiling_b"]["accuracy"] - res["parent_b_torch"]["accuracy"]
    res["gap_closed_at_200"] = {o: (rows["200"]["accuracy"] - res["parent_b_torch"]["accuracy"]) / gap
                                for o, rows in res["orders"].items() if "200" in rows and gap > 0}
    res["seconds"] = time.perf_counter() - t0
    (work / "lab_loop.json").write_text(json.dumps(res, indent=1))
    plot(res, work / "lab_loop.png")
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.lab_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parent", type=Path, default=Path("demo/models/lite0"), help="lab A's model folder (make demo)")
    p.add_argument("--lab-a-data", type=Path, default=Path("demo/data"), help="lab A's training data (make demo)")
    p.add_argument("--work", type=Path, default=Path("demo/lab"), help="folder for the sets, runs, plot and JSON")
    p.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 500], help="reviewed cells per fine-tune")
    p.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the random order")
    p.add_argument("--scale", type=float, default=1.0, help="size of the lab B sets against the demo's (1)")
    p.add_argument("--convert", action="store_true", help="also convert the N=200 learning model and score its int8")
    a = p.parse_args(argv)
    for path, what in ((a.parent / "model_card.json", "--parent"), (a.lab_a_data, "--lab-a-data")):
        if not path.exists():
            raise CytoEdgeError(f"{what}: {path} does not exist (run make demo first, or pass it)")
    res = run(a.parent, a.lab_a_data, a.work, a.n, a.orders, a.threads, a.seed, a.convert, a.scale)
    print(json.dumps({k: v for k, v in res.items() if k != "orders"}, indent=1))
    print(f"plot: {a.work / 'lab_loop.png'}; figures: {a.work / 'lab_loop.json'} ({res['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    from cytoedge.edge_app.clitools import run_cli

    raise SystemExit(run_cli("lab_loop", main))
