"""What the classifier computes, crop by crop, for ``make pi-check`` to compare across machines.

Runs on both sides (x86 and the emulated Pi) with edge_app alone. For every crop file and
every cell the finder cuts from every field, and for each TFLite artifact:

- **own**: :class:`edge_app.classifier.Classifier` as the device runs it (this machine's
  OpenCV preprocessing, then the interpreter);
- **same input**: the interpreter alone on the input tensors of the reference machine
  (``--reference DIR``: the x86 side's probe output), or on this machine's own tensors
  when there is no reference. Compared across machines, this isolates the interpreter.

It writes ``OUT/probe.json`` and ``OUT/inputs-FORMAT.npy`` (the input tensors, in the order
of ``keys``)::

    {"machine": ..., "versions": {...}, "cells": {FIELD: [[x, y, w, h], ...]},
     "formats": {FMT: {"logit_step": s, "runtime": ..., "keys": [...],
                       "own": {KEY: {"class": c, "logits": [...]}}, "same_input": {...},
                       "inputs": {"total": n, "differ": k, "max_difference": d}}}}

KEY is a crop file's name, or FIELD#i for the i-th cell of FIELD. ``logit_step`` is the
int8 output's quantisation scale (one int8 step of a logit), 0 for a float output;
``inputs`` counts the tensor values that differ from the reference's.

    python probe.py MODEL_DIR FIELDS_DIR CROPS_DIR OUT_DIR [--reference X86_OUT_DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def _rows(class_names: list[str], keys: list[str], logits) -> dict[str, dict]:
    return {k: {"class": class_names[int(row.argmax())], "logits": [float(v) for v in row]} for k, row in zip(keys, logits)}


def same_input_logits(clf, x):
    """The artifact's interpreter alone, one tensor per invocation: dequantised logits (N x classes)."""
    import numpy as np

    from cytoedge.edge_app.interpreter import load_interpreter
    from cytoedge.edge_app.preprocess import Quantization, dequantize

    interp = load_interpreter(clf.path, clf.loaded.num_threads).interpreter
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *x.shape[1:]])
    interp.allocate_tensors()
    out = []
    for t in x:
        interp.set_tensor(inp["index"], t[None])
        interp.invoke()
        d = interp.get_output_details()[clf.entry.outputs["logits"].index]
        scale, zero = d["quantization"]
        raw = interp.get_tensor(d["index"]).reshape(-1)
        quant = np.dtype(d["dtype"]) in (np.int8, np.uint8) and scale > 0
        out.append(dequantize(raw, Quantization(float(scale), int(zero), np.dtype(d["dtype"]).name)) if quant
                   else raw.astype(np.float32))
    return np.stack(out) if out else np.zeros((0, len(clf.class_names)), np.float32)


def probe(model: Path, fields: Path, crops: Path, out: Path, reference: Path | None, threads: int) -> dict:
    import numpy as np

    from cytoedge.edge_app.classifier import DEVICE_FORMATS, Classifier
    from cytoedge.edge_app.finder import crops_of, find_cells
    from cytoedge.edge_app.preprocess import preprocess, quantize
    from cytoedge.edge_app.sources import image_files, read_image

    def images(folder: Path) -> list[tuple[str, object]]:
        found = []
        for path in image_files(folder):
            image, why = read_image(path)
            if image is None:
                raise SystemExit(f"probe: cannot read {path} ({why})")
            found.append((path.name, image))
        return found

    field_images = images(fields)
    detections = {name: find_cells(image) for name, image in field_images}
    named = [(name, image) for name, image in images(crops)]
    for name, image in field_images:
        named += [(f"{name}#{i}", c) for i, c in enumerate(crops_of(image, detections[name]))]
    keys = [k for k, _ in named]
    ref = json.loads((reference / "probe.json").read_text(encoding="utf-8")) if reference else None
    result: dict = {
        "machine": platform.machine(),
        "versions": {d: _version(d) for d in ("numpy", "opencv-python", "opencv-python-headless", "ai-edge-litert")},
        "cells": {name: [list(map(int, d.box)) for d in dets] for name, dets in detections.items()},
        "formats": {},
    }
    for fmt in DEVICE_FORMATS:
        clf = Classifier(model, fmt, threads=threads, allow_rejected=True)
        quant = clf.entry.outputs["logits"].quant if "logits" in clf.entry.outputs else None
        own_logits, _ = clf.raw_outputs([c for _, c in named])
        # the tensors Classifier feeds the interpreter: the card's preprocessing, then its input quantisation
        normalize = clf.entry.input.space != "pixels"
        x = quantize(np.stack([preprocess(c, clf.spec, channel_order="BGR", normalize=normalize) for _, c in named]),
                     clf.entry.input.quant)
        np.save(out / f"inputs-{fmt}.npy", x)
        entry = {"logit_step": float(quant.scale) if quant is not None and quant.is_quantized else 0.0,
                 "runtime": f"{clf.loaded.runtime} {clf.loaded.version}", "keys": keys,
                 "own": _rows(clf.class_names, keys, own_logits)}
        same_keys, same_x = keys, x
        if ref is not None and fmt in ref["formats"]:
            same_keys = ref["formats"][fmt]["keys"]
            same_x = np.load(reference / f"inputs-{fmt}.npy")
            mine = dict(zip(keys, x))
            both = [i for i, k in enumerate(same_keys) if k in mine]
            diff = np.abs(np.stack([mine[same_keys[i]] for i in both]).astype(np.float64) - same_x[both]) if both else np.zeros(0)
            entry["inputs"] = {"total": int(diff.size), "differ": int((diff > 0).sum()),
                               "max_difference": float(diff.max()) if diff.size else 0.0}
        entry["same_input"] = _rows(clf.class_names, same_keys, same_input_logits(clf, same_x))
        result["formats"][fmt] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="probe.py", description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("fields", type=Path)
    ap.add_argument("crops", type=Path)
    ap.add_argument("out", type=Path, help="folder for probe.json and the input tensors")
    ap.add_argument("--reference", type=Path, help="the reference machine's probe output folder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = probe(args.model, args.fields, args.crops, args.out, args.reference, args.threads)
    (args.out / "probe.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    n = sum(len(f["own"]) for f in result["formats"].values())
    print(f"probe: {n} crop outputs from {len(result['formats'])} artifacts -> {args.out / 'probe.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
