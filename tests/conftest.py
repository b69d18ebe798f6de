"""Shared fixtures. Tests use data the project makes (the synthetic generator) or ships in tests/."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """edge_app.modelcheck remembers probed model files under $XDG_CACHE_HOME: a private one for the tests
    (set in os.environ so that the edge-app processes the tests start use it too)."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (loopback included, except AF_UNIX) or to resolve a name."""
    attempts: list[object] = []

    def guard(self, address, *args, **kwargs):  # noqa: ANN001
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network access blocked in test: connect to {address!r}")
        return real_connect(self, address, *args, **kwargs)

    def no_lookup(host, *args, **kwargs):  # noqa: ANN001
        attempts.append(host)
        raise socket.gaierror(socket.EAI_NONAME, f"name lookup blocked in test: {host!r}")

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    return attempts


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """A small synthetic SIPaKMeD-shaped tree (5 classes x 24 crops from 4 frames each, 2 slide fields,
    6 non-cell crops per kind in negatives/ and ood/)."""
    from cytoedge.train.data.synth import SynthOptions, generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(SynthOptions(out=out, per_class=24, frames=4, seed=0, fields=2, frame_size=(640, 480), non_cells=6))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(synth_tree, tmp_path_factory):
    """A checkpoint bundle of a small ShuffleNetV2 (64 x 64 input) trained briefly by edge-train on `synth_tree`.

    CE, 40 epochs of 4 batches (~15 s): 60 % on its 60 validation images, so agreement between
    artifacts is measured on a model that tells classes apart (4 hybrid epochs stayed at chance).

    Shared by the conversion, device and benchmark tests: build on it rather than training another model.
    """
    from cytoedge.train.config import TrainConfig
    from cytoedge.train.run import run_training

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = TrainConfig(data=str(synth_tree), out=str(out), model="shufflenet_v2_x1_0", input_size=64, folds=2, fold=0,
                      epochs=40, lr=0.05, grad_clip=2.0, loss="ce", progress=False, seed=0)
    run_training(cfg)
    return out / "fold_0"


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
    from cytoedge.convert.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def convert_cli():
    """``edge-convert`` in-process: ``convert_cli([...]) -> (exit code, stdout, stderr)``."""
    return run_cli


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    """An Ed25519 private key (``edge-convert keygen``); its public half is the same path with ``.pub``."""
    prefix = tmp_path_factory.mktemp("signing") / "lab"
    rc, _, err = run_cli(["keygen", "--out", str(prefix)])
    assert rc == 0, err
    return prefix.with_suffix(".key")


@pytest.fixture(scope="session")
def converted(tiny_bundle, signing_key, tmp_path_factory) -> Conversion:
    """``edge-convert tiny_bundle --int8 --calib-images 20 --max-drop 100 --sign KEY --out ...`` run once,
    offline-checked.

    ``--max-drop 100``: with a few dozen validation images one changed prediction is more than a
    point, so the happy path does not depend on it; ``test_gate.py`` forces the gate instead.
    ``--sign``: every device and benchmark test then also runs on a signed model folder.
    """
    out = tmp_path_factory.mktemp("converted") / "model"
    with record_network() as attempts:
        rc, so, se = run_cli([str(tiny_bundle), "--out", str(out), "--int8", "--calib-images", "20",
                              "--max-batch", "8", "--max-drop", "100", "--keep-work", "--sign", str(signing_key)])
    return Conversion(rc, out, Path(tiny_bundle), so, se, attempts)


@pytest.fixture(scope="session")
def device_model(converted) -> Path:
    """The model folder of the one real conversion (ONNX -> onnx2tf -> fp32 + calibrated int8, max batch 8).

    The device and benchmark tests run on it: the suite converts once. Tests that damage a
    model copy it first (``model_copy``).
    """
    assert converted.rc == 0, f"edge-convert failed: {converted.stderr}"
    return converted.out.resolve()


# What a checkout holds beside the sources (git-ignored): not part of a build from a fresh clone.
_NOT_SOURCES = {".git", ".venv", "build", "dist", "demo", "data", "models", "runs", "results", "slides", "reports",
                ".pytest_cache", ".hypothesis", "test-artifacts", ".gl"}


@pytest.fixture(scope="session")
def cytoedge_wheel(tmp_path_factory) -> Path:
    """The wheel ``pip wheel --no-deps --no-build-isolation`` builds from a copy of this checkout's sources.

    A copy: setuptools keeps ``build/lib`` between builds, and a module deleted since the last build
    would otherwise still ship.
    """
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path_factory.mktemp("wheel") / "src"
    shutil.copytree(repo, src, ignore=lambda d, names: [n for n in names if (Path(d) == repo and n in _NOT_SOURCES)
                                                        or n == "__pycache__" or n.endswith(".egg-info")])
    out = src.parent / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    return next(out.glob("cytoedge-*.whl"))


@pytest.fixture(scope="session")
def bench_model(device_model) -> Path:
    """The same converted model folder, under the name the benchmark tests use."""
    return device_model
