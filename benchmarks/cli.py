"""``bench-device``: FLOPs, memory, latency and accuracy per model x format x board."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from edge_app.clitools import run_cli
from edge_app.errors import CytoEdgeError


def get_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="bench-device", description=__doc__)


def _main(argv: Sequence[str] | None) -> int:
    get_parser().parse_args(argv)
    raise CytoEdgeError("bench-device is not built yet (issue #5)")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("bench-device", _main, argv)
