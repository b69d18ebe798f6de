"""``edge-convert``: bundle -> ONNX -> TFLite fp32 + int8 with a model card."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from edge_app.clitools import run_cli
from edge_app.errors import CytoEdgeError


def get_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="edge-convert", description=__doc__)


def _main(argv: Sequence[str] | None) -> int:
    get_parser().parse_args(argv)
    raise CytoEdgeError("edge-convert is not built yet (issue #3)")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("edge-convert", _main, argv)
