"""How fast the device pipeline is: finder, classifier, end to end, against a naive per-crop PyTorch loop.

    python -m benchmarks.pipeline_speed                        # builds what it needs under runs/pipeline_speed
    python -m benchmarks.pipeline_speed --model models/shufflenet --frames 10 --threads 4

Frames: synthetic 1280x960 slide fields with ``--cells`` cells each (the synthetic
generator's cell painter), written as PNG files. Model: ``--model`` (an edge-convert
folder whose card has a ``tflite-int8`` artifact and a ``bundle/`` copy), else a
ShuffleNetV2 x1.0 at 224x224 trained one short epoch on synthetic crops and
converted to int8 (built once, then reused). Speed does not depend on how well the
model is trained.

Per frame (median over the frames, after one warm-up frame):

* ``finder``        - edge_app.finder.find_cells (+ cutting the crops);
* ``litert batched``- edge_app.classifier on all crops, ``max_batch`` crops per invocation;
* ``litert 1x1``    - the same interpreter, one invocation per crop;
* ``app``           - edge_app.app.run over the frame folder: read, find, classify, store (SQLite + review crops);
* ``torch loop``    - the naive way: finder, then per crop the same preprocessing and one eager PyTorch forward.

This benchmark imports torch (for the comparison row); the app itself never does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_app.errors import CytoEdgeError


def make_frames(folder: Path, n: int, cells: int, seed: int) -> list[Path]:
    """``n`` synthetic 1280x960 fields with ``cells`` labelled cells each (reused when already there)."""
    import cv2

    from train.data.synth import FIELD_MIX
    from train.data.synth_frames import compose_frame

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"field_{i:03d}.png" for i in range(n)]
    rng = np.random.default_rng(seed)
    names, shares = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
    for p in paths:
        classes = [names[int(i)] for i in rng.choice(len(names), size=cells, p=shares)]
        if not p.is_file():
            cv2.imwrite(str(p), compose_frame(classes, (1280, 960), 0.5, rng).image)
    return paths


def build_model(work: Path, log) -> Path:
    """A ShuffleNetV2 x1.0 (224x224) trained one short epoch on synthetic crops, converted with --int8."""
    from convert.pipeline import ConvertOptions, convert_bundle
    from train.config import TrainConfig
    from train.data.synth import SynthOptions, generate
    from train.run import run_training

    model = work / "model"
    if (model / "model_card.json").is_file():
        return model
    data, run = work / "synth", work / "run"
    if not (data / "synth.json").is_file():
        log("building: synthetic crops")
        generate(SynthOptions(out=data, per_class=24, frames=3, seed=0))
    if not (run / "fold_0" / "bundle.json").is_file():
        log("building: one short training epoch of shufflenet_v2_x1_0 at 224x224")
        run_training(TrainConfig(data=str(data), out=str(run), model="shufflenet_v2_x1_0", folds=2, fold=0,
                                 epochs=1, lr=0.02, progress=False, seed=0))
    log("building: edge-convert --int8")
    convert_bundle((run / "fold_0").resolve(), model.resolve(), ConvertOptions(int8=True, calib_images=40,
                                                                                 max_drop=100.0), log=lambda s: None)
    return model


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def measure(model: Path, frames: list[Path], threads: int, log) -> dict[str, dict[str, float]]:
    import cv2

    from edge_app.app import AppOptions, run
    from edge_app.classifier import Classifier
    from edge_app.finder import crops_of, find_cells
    from edge_app.sources import FileListSource

    images = [cv2.imread(str(p)) for p in frames]
    clf = Classifier(model, "tflite-int8", threads=threads)
    res: dict[str, dict[str, float]] = {}
    cells = [len(find_cells(images[0]))]  # warm-up

    t_find, t_batch, t_single, n_cells, crops_per = [], [], [], [], []
    for img in images:
        t0 = time.perf_counter()
        dets = find_cells(img)
        crops = crops_of(img, dets)
        t1 = time.perf_counter()
        clf.classify(crops)
        t2 = time.perf_counter()
        t_find.append(t1 - t0)
        t_batch.append(t2 - t1)
        n_cells.append(len(dets))
        crops_per.append(crops)
    batch = clf.max_batch
    clf.max_batch = 1
    for crops in crops_per:
        t0 = time.perf_counter()
        clf.classify(crops)
        t_single.append(time.perf_counter() - t0)
    clf.max_batch = batch
    cells = statistics.fmean(n_cells)
    res["finder"] = {"ms": _median_ms(t_find)}
    res[f"litert int8 batched (max {batch})"] = {"ms": _median_ms(t_batch)}
    res["litert int8 1 crop/invoke"] = {"ms": _median_ms(t_single)}
    log(f"finder and LiteRT measured on {len(images)} frames, {cells:.1f} cells per frame")

    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        s = run(AppOptions(model=model, source="", slide="bench", out=Path(tmp) / "store", threads=threads,
                           fmt="tflite-int8"), source=FileListSource(frames, str(frames[0].parent)))
    res["app end to end (read+find+classify+store)"] = {
        "ms": 1e3 * s.seconds / max(1, s.frames_done), "frames_per_s": s.frames_per_s,
        "cells_per_s": s.cells / s.seconds if s.seconds else 0.0}
    stages = ", ".join(f"{k} {v:.1f}" for k, v in s.to_dict()["stage_ms_mean"].items())
    log(f"app: {s.frames_done} frames, {s.cells} cells ({dict(s.per_group)}) in {s.seconds:.2f} s; "
        f"mean ms per frame: {stages}")

    t_torch = _torch_loop(model, images, threads)
    res["naive torch loop (find + 1 crop/forward)"] = {"ms": _median_ms(t_torch)}
    res["_cells_per_frame"] = {"ms": cells}
    fb = _median_ms(t_find) + _median_ms(t_batch)
    res["finder + litert batched"] = {"ms": fb, "frames_per_s": 1e3 / fb, "cells_per_s": cells * 1e3 / fb}
    tt = res["naive torch loop (find + 1 crop/forward)"]
    tt.update(frames_per_s=1e3 / tt["ms"], cells_per_s=cells * 1e3 / tt["ms"])
    return res


def _torch_loop(model: Path, images: list[np.ndarray], threads: int) -> list[float]:
    """Finder, then per crop: the device preprocessing, a tensor, one eager forward (what a first prototype does)."""
    import torch

    from edge_app.finder import crops_of, find_cells
    from edge_app.preprocess import preprocess
    from train.bundle import read_bundle

    torch.set_num_threads(threads)
    bundle = read_bundle(model / "bundle")
    net = bundle.load_model().eval()
    spec = bundle.preprocessing
    times = []
    with torch.inference_mode():
        for k, img in enumerate([images[0], *images]):
            t0 = time.perf_counter()
            for crop in crops_of(img, find_cells(img)):
                x = torch.from_numpy(preprocess(crop, spec)).permute(2, 0, 1).unsqueeze(0)
                logits, _ = net(x)
                torch.softmax(logits, dim=1)
            if k:  # the first pass is warm-up
                times.append(time.perf_counter() - t0)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    from edge_app.boards import detect_board

    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="edge-convert model folder (default: build one under --work)")
    p.add_argument("--work", type=Path, default=Path("runs/pipeline_speed"),
                   help="frames and the built model, reused by later runs (default: %(default)s)")
    p.add_argument("--frames", type=int, default=10, help="frames to measure (default: %(default)s)")
    p.add_argument("--cells", type=int, default=30, help="cells per synthetic frame (default: %(default)s)")
    p.add_argument("--threads", type=int, help="interpreter and torch threads (default: the board profile's)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    board = detect_board()
    threads = a.threads or board.threads
    if threads < 1 or a.frames < 1 or a.cells < 1:
        raise SystemExit("pipeline_speed: --threads, --frames and --cells must be >= 1")

    def log(msg: str) -> None:
        print(f"pipeline_speed: {msg}", file=sys.stderr, flush=True)

    model = a.model or build_model(a.work, log)
    frames = make_frames(a.work / f"frames_{a.cells}cells_seed{a.seed}", a.frames, a.cells, a.seed)
    try:
        res = measure(model, frames, threads, log)
    except CytoEdgeError as exc:
        raise SystemExit(f"pipeline_speed: {exc}") from None
    cells = res.pop("_cells_per_frame")["ms"]
    print(f"pipeline speed on {board.title} ({board.detected or board.name}), {threads} threads, "
          f"{len(frames)} synthetic 1280x960 frames ({cells:.1f} cells found per frame), model {model}")
    print(f"{'stage':45s} {'ms/frame':>9s} {'frames/s':>9s} {'cells/s':>9s}")
    for name, r in res.items():
        fps = f"{r['frames_per_s']:9.2f}" if "frames_per_s" in r else " " * 9
        cps = f"{r['cells_per_s']:9.1f}" if "cells_per_s" in r else " " * 9
        print(f"{name:45s} {r['ms']:9.1f} {fps} {cps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
