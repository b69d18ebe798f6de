"""How fast the device pipeline is against its own classifier and against a naive per-crop PyTorch loop.

    python -m cytoedge.benchmarks.pipeline_speed                          # builds what it needs under runs/pipeline_speed
    python -m cytoedge.benchmarks.pipeline_speed --json results/pipeline.json --rounds 5
    python -m cytoedge.benchmarks.pipeline_speed --model models/shufflenet --frames 30 --threads 4

Frames: ``--frames`` synthetic 1280x960 slide fields with ``--cells`` cells each (the
synthetic generator's cell painter), written once as PNG files. Model: ``--model`` (an
edge-convert folder whose card has the ``--format`` artifact and a ``bundle/`` copy), else
a ShuffleNetV2 x1.0 at 224x224 trained one short epoch on synthetic crops and converted to
int8 (built once, then reused; speed does not depend on how well it is trained).

Every round measures, one after the other on the same frames and at the same threads:

* ``decode``            - cv2.imread of each frame file;
* ``finder``            - edge_app.finder.find_cells + cutting the crops;
* ``classify pure``     - the interpreter's ``invoke`` alone over each frame's crops, inputs already
  in place, in the app's invocations (``max_batch`` crops each): the floor for the app;
* ``classify``          - edge_app's Classifier.classify (crops -> input -> invoke -> verdicts);
* ``app end to end``    - edge_app.app.run over the frame files: read, decode, find, classify, store
  (SQLite, fsynced review crops), whole loop from the first frame asked for to the last committed;
* ``naive torch loop``  - decode, finder, then per crop the same preprocessing and one eager PyTorch
  forward (what a first prototype does).

Rounds alternate the measurements, so a change in the machine's load hits all of them; each
figure is the median over ``--rounds`` and each ratio (app / pure, naive / app) the median of
the per-round ratios. The report names the host (CPU model, ISA features, load average).
This benchmark imports torch (for the naive loop); the app itself never does. It reads only
edge_app's public API, so it measures earlier versions of the app as well (before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.errors import CytoEdgeError


def make_frames(folder: Path, n: int, cells: int, seed: int) -> list[Path]:
    """``n`` synthetic 1280x960 fields with ``cells`` labelled cells each (reused when already there)."""
    import cv2

    from cytoedge.train.data.synth import FIELD_MIX
    from cytoedge.train.data.synth_frames import compose_frame

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"field_{i:03d}.png" for i in range(n)]
    names, shares = list(FIELD_MIX), np.array(list(FIELD_MIX.values()))
    for i, p in enumerate(paths):
        if not p.is_file():  # frame i depends on (seed, i) only: the same whichever frames exist already
            rng = np.random.default_rng([seed, i])
            classes = [names[int(k)] for k in rng.choice(len(names), size=cells, p=shares)]
            cv2.imwrite(str(p), compose_frame(classes, (1280, 960), 0.5, rng).image)
    return paths


def build_model(work: Path, log: Callable[[str], None]) -> Path:
    """A ShuffleNetV2 x1.0 (224x224) trained one short epoch on synthetic crops, converted with --int8."""
    from cytoedge.convert.pipeline import ConvertOptions, convert_bundle
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.data.synth import SynthOptions, generate
    from cytoedge.train.run import run_training

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
                   max_drop=100.0, view="dataset"), log=lambda s: None)  # speed does not depend on what the fit saw
    return model


# -- the host ------------------------------------------------------------------------------------

def isa_features() -> dict[str, bool]:
    """The host's kernel-relevant ISA features, as bench-device records them (``{}`` when unreadable)."""
    from cytoedge.benchmarks.board import isa_features as board_isa

    return board_isa()


def host_record() -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, ISA features, board, runtime versions."""
    from cytoedge.benchmarks.runtimes import runtime_versions
    from cytoedge.edge_app.boards import detect_board, machine_facts

    board = detect_board()
    return {"cpu_model": machine_facts().get("cpu_model", ""), "cores": os.cpu_count() or 0,
            "machine": platform.machine(), "isa": isa_features(), "board": board.title, "python": platform.python_version(),
            "runtimes": runtime_versions()}


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# -- the measurements ----------------------------------------------------------------------------

def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, max(1, size))]


class PureClassifier:
    """The artifact in its own interpreter at the app's threads; ``invoke`` timed alone, inputs set before."""

    def __init__(self, clf: Any, threads: int) -> None:
        from cytoedge.edge_app.interpreter import load_interpreter
        from cytoedge.edge_app.preprocess import preprocess, quantize

        self.interp = load_interpreter(clf.path, threads).interpreter
        self.index = self.interp.get_input_details()[0]["index"]
        self.max_batch, self.size = clf.max_batch, clf.spec.size
        entry, spec = clf.entry, clf.spec

        def inputs(crops: list[np.ndarray]) -> np.ndarray:  # the reference steps of edge_app.preprocess
            x = np.stack([preprocess(c, spec, channel_order="BGR", normalize=entry.input.space != "pixels")
                          for c in crops])
            return quantize(x, entry.input.quant)
        self.inputs = inputs
        self._n = int(self.interp.get_input_details()[0]["shape"][0])

    def seconds(self, x: np.ndarray) -> float:
        total = 0.0
        for sl in _chunks(len(x), self.max_batch):
            part = x[sl]
            if len(part) != self._n:
                self.interp.resize_tensor_input(self.index, [len(part), self.size, self.size, 3])
                self.interp.allocate_tensors()
                self._n = len(part)
            self.interp.set_tensor(self.index, part)
            t0 = time.perf_counter()
            self.interp.invoke()
            total += time.perf_counter() - t0
        return total


def _torch_net(model: Path, threads: int) -> tuple[Any, Any]:
    import torch

    from cytoedge.train.bundle import read_bundle

    torch.set_num_threads(threads)
    bundle = read_bundle(model / "bundle")
    return bundle.load_model().eval(), bundle.preprocessing


def _naive_seconds(net: Any, spec: Any, paths: list[Path]) -> float:
    """Decode, finder, then per crop: the device preprocessing, a tensor, one eager forward."""
    import cv2
    import torch

    from cytoedge.edge_app.finder import crops_of, find_cells
    from cytoedge.edge_app.preprocess import preprocess

    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            img = cv2.imread(str(p))
            for crop in crops_of(img, find_cells(img)):
                x = torch.from_numpy(preprocess(crop, spec)).permute(2, 0, 1).unsqueeze(0)
                logits, _ = net(x)
                torch.softmax(logits, dim=1)
    return time.perf_counter() - t0


def _app_run(model: Path, fmt: str, paths: list[Path], threads: int, store: Path) -> Any:
    from cytoedge.edge_app.app import AppOptions, run
    from cytoedge.edge_app.sources import FileListSource

    return run(AppOptions(model=model, source="", slide="bench", out=store, threads=threads, fmt=fmt),
               source=FileListSource(paths, str(paths[0].parent)))


def measure(model: Path, paths: list[Path], threads: int, fmt: str, rounds: int,
            log: Callable[[str], None], naive: bool = True) -> dict[str, Any]:
    """Every stage, ``rounds`` times, interleaved; per-round totals in seconds over all frames."""
    import cv2

    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.edge_app.finder import crops_of, find_cells

    n = len(paths)
    clf = Classifier(model, fmt, threads=threads)
    pure = PureClassifier(clf, threads)
    images = [cv2.imread(str(p)) for p in paths]
    crops = [crops_of(img, find_cells(img)) for img in images]  # also the warm-up of the finder
    x = [pure.inputs(c) if c else None for c in crops]
    for xi in x[:2]:  # warm-up: XNNPACK packs weights and plans the first batch sizes
        if xi is not None:
            pure.seconds(xi)
    clf.classify(crops[0])
    if naive:
        net, spec = _torch_net(model, threads)
        _naive_seconds(net, spec, paths[:1])  # warm-up
    per_round: list[dict[str, float]] = []
    app_stages: list[dict[str, float]] = []
    for r in range(rounds):
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        for p in paths:
            cv2.imread(str(p))
        t["decode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for img in images:
            crops_of(img, find_cells(img))
        t["finder"] = time.perf_counter() - t0
        t["classify_pure"] = sum(pure.seconds(xi) for xi in x if xi is not None)
        t0 = time.perf_counter()
        for c in crops:
            clf.classify(c)
        t["classify"] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
            s = _app_run(model, fmt, paths, threads, Path(tmp) / "store")
        if s.frames_done != n:
            raise CytoEdgeError(f"the app committed {s.frames_done} of {n} frames: see its log lines")
        t["app"] = s.seconds
        app_stages.append(s.to_dict()["stage_ms_mean"])
        if naive:
            t["naive"] = _naive_seconds(net, spec, paths)
        per_round.append(t)
        log(f"round {r + 1}/{rounds}: app {1e3 * t['app'] / n:.1f} ms/frame, pure classification "
            f"{1e3 * t['classify_pure'] / n:.1f}" + (f", naive {1e3 * t['naive'] / n:.1f}" if naive else "")
            + f" (load average {load_average()})")
    cells = sum(len(c) for c in crops)
    return {"rounds": per_round, "app_stage_ms": app_stages, "crops": cells, "frames": n,
            "invocations_per_frame": sum(len(_chunks(len(c), clf.max_batch)) for c in crops) / n,
            "model": {"dir": str(model), "format": fmt, "architecture": clf.card.architecture,
                      "input_size": clf.spec.size, "input": {"dtype": clf.entry.input.dtype,
                                                             "space": clf.entry.input.space,
                                                             "quant": clf.entry.input.quant.to_dict()},
                      "max_batch": clf.max_batch, "sha256": clf.entry.sha256}}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds: ms per frame per stage, the app's throughput, the ratios."""
    n, cells = raw["frames"], raw["crops"]
    rounds = raw["rounds"]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ms = {k: 1e3 * v / n for k, v in med.items()}
    ratio = {"app_over_pure": statistics.median(r["app"] / r["classify_pure"] for r in rounds),
             "classify_over_pure": statistics.median(r["classify"] / r["classify_pure"] for r in rounds)}
    if "naive" in med:
        ratio["naive_over_app"] = statistics.median(r["naive"] / r["app"] for r in rounds)
    stages = {k: round(statistics.median(s.get(k, 0.0) for s in raw["app_stage_ms"]), 2)
              for k in raw["app_stage_ms"][0]}
    return {
        "frames": n, "crops": cells, "cells_per_frame": cells / n, "rounds": len(rounds),
        "invocations_per_frame": raw["invocations_per_frame"],
        "ms_per_frame": {k: round(v, 3) for k, v in ms.items()},
        "ms_per_crop": {"classify_pure": round(1e3 * med["classify_pure"] / cells, 4),
                        "classify": round(1e3 * med["classify"] / cells, 4)},
        "app": {"frames_per_s": round(n / med["app"], 3), "cells_per_s": round(cells / med["app"], 1),
                "stage_ms_mean": stages},
        "ratios": {k: round(v, 3) for k, v in ratio.items()},
        "model": raw["model"],
        "per_round_s": [{k: round(v, 5) for k, v in r.items()} for r in rounds],
    }


ROWS = (("decode", "decode (cv2.imread of the PNG)"), ("finder", "finder (find + cut crops)"),
        ("classify_pure", "classification pure (invoke only)"), ("classify", "Classifier.classify (prep + invoke)"),
        ("app", "edge-app end to end"), ("naive", "naive loop (decode, find, 1 eager forward per crop)"))


def print_report(doc: dict[str, Any]) -> None:
    res, host = doc["result"], doc["host"]
    isa = " ".join(f for f, on in host["isa"].items() if on) or "none recorded"
    print(f"pipeline speed: {host['cpu_model']} ({host['cores']} cores; {isa}), {doc['threads']} threads, "
          f"{res['frames']} synthetic 1280x960 frames, {res['cells_per_frame']:.1f} cells per frame, "
          f"{res['rounds']} rounds (medians); load average {doc['load_average']['before']} -> "
          f"{doc['load_average']['after']}")
    m = res["model"]
    print(f"model: {m['architecture']} {m['format']} at {m['input_size']} px, input {m['input']['dtype']} "
          f"{m['input']['space']} (scale {m['input']['quant']['scale']:.5g}, zero point {m['input']['quant']['zero_point']}), "
          f"max batch {m['max_batch']}, {res['invocations_per_frame']:.2f} invocations per frame ({m['dir']})")
    print(f"{'stage':52s} {'ms/frame':>9s} {'frames/s':>9s} {'cells/s':>9s}")
    for key, label in ROWS:
        if key not in res["ms_per_frame"]:
            print(f"{label:52s} {'skipped (--no-naive)':>9s}")
            continue
        v = res["ms_per_frame"][key]
        print(f"{label:52s} {v:9.1f} {1e3 / v:9.2f} {res['cells_per_frame'] * 1e3 / v:9.1f}")
    r = res["ratios"]
    naive = f"naive / app: {r['naive_over_app']:.2f}x   " if "naive_over_app" in r else ""
    print(f"app / pure classification: {r['app_over_pure']:.2f}x   {naive}classify / pure: "
          f"{r['classify_over_pure']:.2f}x   per crop: pure {res['ms_per_crop']['classify_pure']:.3f} ms")
    print("app stages, mean ms per frame (overlapping threads): "
          + ", ".join(f"{k} {v:.1f}" for k, v in res["app"]["stage_ms_mean"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.pipeline_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="edge-convert model folder (default: build one under --work)")
    p.add_argument("--format", default="tflite-int8", help="artifact to run (default: %(default)s)")
    p.add_argument("--work", type=Path, default=Path("runs/pipeline_speed"),
                   help="frames and the built model, reused by later runs (default: %(default)s)")
    p.add_argument("--frames", type=int, default=20, help="frames per round (default: %(default)s)")
    p.add_argument("--cells", type=int, default=30, help="cells per synthetic frame (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians (default: %(default)s)")
    p.add_argument("--threads", type=int, help="interpreter and torch threads (default: the board profile's)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every figure here (machine-readable)")
    p.add_argument("--no-naive", action="store_true",
                   help="skip the naive PyTorch loop (a board without torch; it also takes the longest)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from cytoedge.edge_app.boards import detect_board

    threads = a.threads or detect_board().threads
    if threads < 1 or a.frames < 1 or a.cells < 1 or a.rounds < 1:
        raise SystemExit("pipeline_speed: --threads, --frames, --cells and --rounds must be >= 1")

    def log(msg: str) -> None:
        print(f"pipeline_speed: {msg}", file=sys.stderr, flush=True)

    model = a.model or build_model(a.work, log)
    frames = make_frames(a.work / f"frames_{a.cells}cells_seed{a.seed}", a.frames, a.cells, a.seed)
    load_before = load_average()
    try:
        raw = measure(model, frames, threads, a.format, a.rounds, log, naive=not a.no_naive)
    except CytoEdgeError as exc:
        raise SystemExit(f"pipeline_speed: {exc}") from None
    doc = {"benchmark": "pipeline_speed", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": threads,
           "host": host_record(), "load_average": {"before": load_before, "after": load_average()},
           "result": summarize(raw)}
    print_report(doc)
    if a.json:
        from cytoedge.edge_app.atomic import atomic_write_text

        atomic_write_text(a.json, json.dumps(doc, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
