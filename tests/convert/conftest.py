"""One real conversion per test session, of the shared ``tiny_bundle`` (tests/conftest.py), shared by these tests.

The conversion runs through the real CLI (``edge-convert BUNDLE --int8 ...``): real ONNX export,
real onnx2tf, real LiteRT validation. A process-wide audit hook records every network
connection or DNS lookup attempted while it runs (the fixture is session-scoped, so the
function-scoped ``no_network`` fixture cannot wrap it).
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_NET_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request")
_recording: list[list[tuple]] = []


def _audit(event: str, args: tuple) -> None:
    if _recording and event in _NET_EVENTS:
        _recording[-1].append((event, args))


sys.addaudithook(_audit)  # cannot be removed; it records only while `record_network` is active


@contextlib.contextmanager
def record_network():
    """Every network attempt (connect, DNS lookup, urllib request) made inside the block, in a list."""
    attempts: list[tuple] = []
    _recording.append(attempts)
    try:
        yield attempts
    finally:
        _recording.remove(attempts)


@dataclass
class Conversion:
    rc: int
    out: Path
    bundle: Path
    stdout: str
    stderr: str
    network: list = field(default_factory=list)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from convert.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def convert_cli():
    """``edge-convert`` in-process: ``convert_cli([...]) -> (exit code, stdout, stderr)``."""
    return run_cli


@pytest.fixture(scope="session")
def converted(tiny_bundle, tmp_path_factory) -> Conversion:
    """``edge-convert tiny_bundle --int8 --calib-images 20 --max-drop 100 --out ...`` run once, offline-checked.

    ``--max-drop 100``: with a few dozen validation images one changed prediction is more than a
    point, so the happy path does not depend on it; ``test_gate.py`` forces the gate instead.
    """
    out = tmp_path_factory.mktemp("converted") / "model"
    with record_network() as attempts:
        rc, so, se = run_cli([str(tiny_bundle), "--out", str(out), "--int8", "--calib-images", "20",
                              "--max-batch", "8", "--max-drop", "100", "--keep-work"])
    return Conversion(rc, out, Path(tiny_bundle), so, se, attempts)
