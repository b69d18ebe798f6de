"""Shared fixtures. Tests use data the project makes (the synthetic generator) or ships in tests/."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (loopback included, except AF_UNIX)."""
    attempts: list[object] = []

    def guard(self, address, *args, **kwargs):  # noqa: ANN001
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network access blocked in test: connect to {address!r}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    return attempts


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """A small synthetic SIPaKMeD-shaped tree (5 classes x 24 crops from 4 frames each, 2 slide fields)."""
    from train.data.synth import SynthOptions, generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(SynthOptions(out=out, per_class=24, frames=4, seed=0, fields=2, frame_size=(640, 480)))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(synth_tree, tmp_path_factory):
    """A checkpoint bundle of a small ShuffleNetV2 (64 x 64 input) trained briefly by edge-train on `synth_tree`.

    Shared by the conversion, device and benchmark tests: build on it rather than training another model.
    """
    from train.config import TrainConfig
    from train.run import run_training

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = TrainConfig(data=str(synth_tree), out=str(out), model="shufflenet_v2_x1_0", input_size=64, folds=2, fold=0,
                      epochs=4, lr=0.02, grad_clip=2.0, progress=False, seed=0)
    run_training(cfg)
    return out / "fold_0"
