"""``edge-app``: the on-device command (capture -> find cells -> classify -> store -> report)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from edge_app.clitools import run_cli
from edge_app.errors import CytoEdgeError


def get_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="edge-app", description=__doc__)


def _main(argv: Sequence[str] | None) -> int:
    get_parser().parse_args(argv)
    raise CytoEdgeError("edge-app is not built yet (issue #4)")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("edge-app", _main, argv)
