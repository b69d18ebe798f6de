"""The one place where typed errors become exit codes (used by all four commands)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cytoedge.edge_app.errors import CytoEdgeError


def run_cli(prog: str, main: Callable[[Sequence[str] | None], int | None],
            argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`CytoEdgeError` becomes ``prog: error: msg`` and its exit code.

    Anything else is a bug and keeps its traceback.
    """
    try:
        rc = main(argv)
    except CytoEdgeError as exc:
        msg = " ".join(str(exc).split())  # always one line
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def fraction_arg(text: str) -> float:
    """argparse type for a share: ``0.02`` or ``2%`` (see :func:`edge_app.report.parse_fraction`)."""
    from cytoedge.edge_app.report import parse_fraction

    try:
        return parse_fraction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
