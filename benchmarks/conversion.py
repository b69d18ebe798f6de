"""What ``edge-convert`` costs and keeps, per bundle: conversion time, artifact sizes, int8 accuracy vs PyTorch.

    python -m cytoedge.benchmarks.conversion BUNDLE [BUNDLE ...] --out DIR [--calib-images 20,200]
        [--tflite-input pixels,normalized] [--threads 2]

Converts every bundle once per combination of ``--calib-images`` and ``--tflite-input``
(``--int8`` always, accuracy gate off) into ``DIR/<architecture>-<space>-c<N>/``, then
prints one row per conversion from its model card: wall time of the whole conversion and
of the onnx2tf stage, the file sizes, PyTorch / fp32 / int8 accuracy on the bundle's
validation split, int8 top-1 agreement with PyTorch and its largest logit error, and
what the device pays per crop for the int8 input: the classifier's own input path (resize into the batch,
channel swap + quantisation in one pass; per crop, in a batch of 16) and the reference steps
``preprocess`` + ``quantize`` (medians)
and one batch-1 invocation (median). Results also go to ``DIR/conversion.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytoedge.edge_app.atomic import atomic_write_json
from cytoedge.edge_app.clitools import run_cli
from cytoedge.edge_app.errors import CytoEdgeError


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def device_costs(model_dir: Path, threads: int, runs: int = 50) -> dict[str, float]:
    """Median ms per crop of the int8 input preparation and of one batch-1 invocation, as edge_app does them."""
    import cv2

    from cytoedge.benchmarks.latency import LatencyOptions, measure
    from cytoedge.edge_app.card import load_card
    from cytoedge.edge_app.classifier import Classifier
    from cytoedge.edge_app.preprocess import preprocess, quantize

    card = load_card(model_dir)
    entry = card.artifact("tflite-int8")
    split = json.loads((model_dir / "bundle" / "split.json").read_text())  # the bundle copy edge-convert made
    crop = cv2.imread(str(Path(split["root"]) / split["val"][0][0]))
    normalize = entry.input.space != "pixels"
    opts = LatencyOptions(warmup=5, min_time=0.5, min_runs=runs)
    reference = measure(lambda: quantize(preprocess(crop, card.preprocessing, normalize=normalize), entry.input.quant),
                        opts)
    clf = Classifier(model_dir, "tflite-int8", threads=threads, allow_rejected=True)
    clf._resize(16)  # noqa: SLF001 - the batch the app would have
    prep16 = measure(lambda: clf.write_input([crop] * 16), opts, batch=16)
    one = measure(lambda: clf.classify([crop]), opts)
    batch = min(entry.max_batch, 16)
    many = measure(lambda: clf.classify([crop] * batch), opts, batch=batch)
    return {"prep_ms": prep16.p50_ms / 16, "reference_prep_ms": reference.p50_ms, "classify_1_ms": one.p50_ms,
            f"classify_{batch}_per_crop_ms": many.p50_ms / batch, "batch": batch}


def convert_one(bundle: Path, out: Path, calib: int, space: str, threads: int, fold: bool = True) -> dict[str, Any]:
    from cytoedge.convert.pipeline import ConvertOptions, convert_bundle

    opts = ConvertOptions(int8=True, calib_images=calib, tflite_input=space, max_drop=100.0, threads=threads,
                          fold_normalization=fold, view="dataset")  # gate off; the conversion, not the fit
    t0 = time.perf_counter()
    card = convert_bundle(bundle, out, opts)
    wall = time.perf_counter() - t0
    table = card.validation["table"]
    row = {
        "architecture": card.architecture, "size": card.preprocessing.size, "space": space, "calib_images": calib,
        "normalization": card.validation.get("normalization", ""),
        "wall_s": round(wall, 1), "onnx2tf_s": card.validation["timings_s"].get("tflite"),
        "sizes_mb": {f: round(a.size_bytes / 1e6, 2) for f, a in card.artifacts.items()},
        "n_val": table["torch"]["n"],
        "acc": {f: table[f]["accuracy"] for f in table},
        "int8_agreement": table["tflite-int8"]["agreement"],
        "int8_max_logit_error": table["tflite-int8"]["max_logit_error"],
        "int8_input": {"dtype": card.artifacts["tflite-int8"].input.dtype,
                       "scale": card.artifacts["tflite-int8"].input.quant.scale,
                       "zero_point": card.artifacts["tflite-int8"].input.quant.zero_point},
        "max_batch": card.artifacts["tflite-int8"].max_batch,
    }
    row.update(device_costs(out, threads))
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ("model", "px", "input", "normalisation", "calib", "convert s", "onnx2tf s", "onnx MB", "fp32 MB", "int8 MB", "n val",
            "torch acc", "fp32 acc", "int8 acc", "int8 agree", "int8 max logit err", "prep ms", "1 crop ms",
            "per crop batched ms")
    lines = [head]
    for r in rows:
        s = r["sizes_mb"]
        per = next(v for k, v in r.items() if k.startswith("classify_") and k.endswith("_per_crop_ms"))
        lines.append((r["architecture"], str(r["size"]), r["space"], r.get("normalization", ""), str(r["calib_images"]),
                      f"{r['wall_s']:.1f}",
                      f"{r['onnx2tf_s']:.1f}", f"{s['onnx']:.2f}", f"{s['tflite-fp32']:.2f}", f"{s['tflite-int8']:.2f}",
                      str(r["n_val"]), f"{r['acc']['torch']:.3f}", f"{r['acc']['tflite-fp32']:.3f}",
                      f"{r['acc']['tflite-int8']:.3f}", f"{r['int8_agreement']:.3f}", f"{r['int8_max_logit_error']:.3f}",
                      f"{r['prep_ms']:.3f}", f"{r['classify_1_ms']:.2f}", f"{per:.2f} (x{r['batch']})"))
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [lines[0], ["---"] * len(head), *lines[1:]])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.conversion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--calib-images", type=_ints, default=[200], metavar="N[,N...]")
    p.add_argument("--tflite-input", default="pixels", metavar="SPACE[,SPACE...]")
    p.add_argument("--normalization", default="layer", metavar="layer[,folded]",
                   help="pixels input: a normalisation layer (default), or mean/std folded into the first "
                        "convolution (edge-convert --fold)")
    p.add_argument("--threads", type=int, default=2)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = get_parser().parse_args(argv)
    spaces = [s.strip() for s in args.tflite_input.split(",") if s.strip()]
    folds = [n.strip() for n in args.normalization.split(",") if n.strip()]
    if not folds or set(folds) - {"folded", "layer"}:
        raise CytoEdgeError(f"--normalization takes folded and/or layer, got {args.normalization!r}")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for bundle in args.bundles:
        if not (bundle / "bundle.json").is_file():
            raise CytoEdgeError(f"{bundle} is not a checkpoint bundle (no bundle.json)")
        arch = json.loads((bundle / "bundle.json").read_text())["architecture"]
        combos = [(space, calib, norm) for space in spaces for calib in args.calib_images
                  for norm in (folds if space == "pixels" else ["layer"])]
        for space, calib, norm in combos:
            name = f"{arch}-{space}-c{calib}" + ("-folded" if space == "pixels" and norm == "folded" else "")
            try:  # bundles are all called fold_<k>: the folder is named by model and options
                rows.append(convert_one(bundle, args.out / name, calib, space, args.threads, norm == "folded"))
            except CytoEdgeError as exc:  # one failing bundle is a finding, not the end of the run
                failed.append(f"{name}: {exc}")
                print(f"{name}: FAILED: {exc}", flush=True)
            atomic_write_json(args.out / "conversion.json", {"rows": rows, "failed": failed})
    print(format_rows(rows))
    for line in failed:
        print(f"failed: {line}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("cytoedge.benchmarks.conversion", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
