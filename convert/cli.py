"""``edge-convert``: checkpoint bundle -> ONNX -> TFLite fp32 (+ calibrated int8), validated, with a model card.

Writes into OUT: model.onnx, model_fp32.tflite, model_int8.tflite (with --int8),
bundle/ (the PyTorch weights, for the benchmark's torch row), logs/tflite.log and
model_card.json (+ model_card.json.sig with --sign KEY).

Also: 'edge-convert keygen --out PREFIX' (an Ed25519 key pair for signing model cards),
'edge-convert sign MODEL_DIR --key KEY' (sign a converted model afterwards). Exit status: 0 all artifacts pass, 2 bad input or a failed stage,
3 an artifact failed the accuracy gate (the card is written and marks it rejected).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cytoedge.convert.calibration import DEFAULT_CALIB_IMAGES, MIN_CALIB_IMAGES
from cytoedge.convert.errors import AccuracyGateError
from cytoedge.convert.pipeline import (DATASET_CELL_REJECTION, FINDER_CELL_REJECTION, VIEWS, ConvertOptions,  # light: heavy
                                       convert_bundle)  # imports happen inside convert_bundle
from cytoedge.edge_app.clitools import Parser, run_cli
from cytoedge.edge_app.configfile import add_config_option, parse_args
from cytoedge.edge_app.rejection import SCORES


def get_parser() -> argparse.ArgumentParser:
    d = ConvertOptions()  # the defaults live in the dataclass only; the help text reads them from there
    p = Parser(prog="edge-convert", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="a fold folder written by edge-train (bundle.json, weights.pt, split.json)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder to write (created if missing)")
    p.add_argument("--int8", action="store_true", help="also write model_int8.tflite: full-integer, calibrated on training images")
    p.add_argument("--calib-images", type=int, default=d.calib_images, metavar="N",
                   help=f"calibration images from the training split, stratified over classes (default "
                        f"{DEFAULT_CALIB_IMAGES}, or the whole split when it is smaller; minimum {MIN_CALIB_IMAGES})")
    p.add_argument("--val", type=Path, default=None, metavar="DATA",
                   help="validate on this SIPaKMeD/ImageFolder tree instead of the bundle's validation split")
    p.add_argument("--max-drop", type=float, default=d.max_drop, metavar="PP",
                   help=f"accuracy points an artifact may lose against PyTorch before it is rejected (default {d.max_drop:g})")
    p.add_argument("--tflite-input", choices=("pixels", "normalized"), default=d.tflite_input,
                   help="what the TFLite files take: 0..255 pixels with the normalisation inside the model, or "
                        f"normalised floats (default {d.tflite_input})")
    p.add_argument("--fold", action="store_true",
                   help="pixels input: fold mean/std into the first convolution instead of a normalisation layer "
                        "(faster; inexact at the image border: see the validation table)")
    p.add_argument("--fixed-batch", action="store_true",
                   help="TFLite with a fixed batch of 1 (default: batch-dynamic, checked up to --max-batch)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, metavar="N",
                   help=f"crops per invocation checked and recorded in the card (default {d.max_batch})")
    p.add_argument("--fit-images", type=int, default=None, metavar="N",
                   help="training images for each artifact's open-set score (default: all)")
    p.add_argument("--open-set-score", choices=SCORES, default=d.open_set_score,
                   help="how each artifact tells cells of known classes from everything else, fitted on its own "
                        f"outputs (default {d.open_set_score}; measured: "
                        "docs/open-set.md#rejecting-what-is-not-a-cell-and-calibrated-confidence)")
    p.add_argument("--cell-rejection", type=float, default=d.cell_rejection, metavar="SHARE",
                   help="share of validation cells the open-set threshold may reject as unknown "
                        f"(default {FINDER_CELL_REJECTION:g} with --view finder, {DATASET_CELL_REJECTION:g} with dataset)")
    p.add_argument("--view", choices=VIEWS, default=d.view,
                   help="what the open-set score, its threshold, the temperature and the error rates are fitted on: "
                        "finder = the device's cell finder on the bundle's labelled frames (cluster images with "
                        ".dat outlines), training groups for the score, validation groups for the rest; dataset = "
                        f"the split's crops (default {d.view})")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="interpreter threads in validation (default: all cores)")
    p.add_argument("--keep-work", action="store_true", help="keep OUT/work (ONNX sources, onnx2tf output, calibration array)")
    p.add_argument("--sign", type=Path, metavar="KEY",
                   help="sign model_card.json with this Ed25519 private key (PEM): writes model_card.json.sig, which "
                        "devices started with --trust PUBKEY require")
    return p


def get_sign_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-convert sign", description="Sign a converted model's card (Ed25519): "
               "writes model_card.json.sig beside it; the card carries every artifact's SHA-256.")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="a folder written by edge-convert")
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM), e.g. from edge-convert keygen")
    return p


def get_keygen_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-convert keygen", description="Make an Ed25519 key pair for signing "
               "model cards: PREFIX.key (private, keep it on the conversion machine) and PREFIX.pub "
               "(copy it to each device and start edge-app with --trust PREFIX.pub).")
    p.add_argument("--out", type=Path, required=True, metavar="PREFIX", help="file name prefix, e.g. keys/lab")
    return p


def _sign(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.signing import sign_card

    a = get_sign_parser().parse_args(argv)
    print(f"signed {a.model / 'model_card.json'}: {sign_card(a.model, a.key)}")
    return 0


def _keygen(argv: Sequence[str]) -> int:
    from cytoedge.edge_app.signing import generate_keypair

    a = get_keygen_parser().parse_args(argv)
    key, pub = generate_keypair(a.out)
    print(f"wrote {key} (private: sign with edge-convert --sign {key}) and {pub} (public: edge-app --trust {pub})")
    return 0


def options_from_args(args: argparse.Namespace) -> ConvertOptions:
    return ConvertOptions(int8=args.int8, calib_images=args.calib_images, val_data=args.val, max_drop=args.max_drop,
                          tflite_input=args.tflite_input, fold_normalization=args.fold,
                          dynamic_batch=not args.fixed_batch, max_batch=args.max_batch,
                          fit_images=args.fit_images, threads=args.threads, keep_work=args.keep_work,
                          open_set_score=args.open_set_score, cell_rejection=args.cell_rejection,
                          view=args.view)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("sign", "keygen"):
        return (_sign if argv[0] == "sign" else _keygen)(argv[1:])
    args = parse_args(get_parser(), argv)
    if args.sign is not None:
        from cytoedge.edge_app.signing import load_private_key

        load_private_key(args.sign)  # a bad key is refused before minutes of conversion
    try:
        convert_bundle(args.bundle, args.out, options_from_args(args))
    except AccuracyGateError:
        _sign_written(args)  # the card was written (marking the rejected artifact): sign what the device reads
        raise
    _sign_written(args)
    return 0


def _sign_written(args: argparse.Namespace) -> None:
    if args.sign is not None:
        from cytoedge.edge_app.signing import sign_card

        print(f"  signed the card: {sign_card(args.out, args.sign)}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("edge-convert", _main, argv)
