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
