"""Fixtures for the web tests: a filled store and Flask test clients on it (helpers in webstore.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from webstore import TOKEN, fill_store

from cytoedge.edge_app.web.app import WebConfig, create_app


@pytest.fixture(scope="session")
def filled_store(tmp_path_factory, synth_tree) -> Path:
    folder = tmp_path_factory.mktemp("web") / "store"
    fill_store(folder, synth_tree)
    return folder


@pytest.fixture
def store_dir(tmp_path, filled_store) -> Path:
    """A fresh copy of the filled store for each test (writing it once costs fsyncs; copying does not)."""
    return Path(shutil.copytree(filled_store, tmp_path / "store"))


@pytest.fixture
def client(store_dir):
    app = create_app(WebConfig(store=store_dir, frame_wait_s=0.2))
    return app.test_client()


@pytest.fixture
def token_client(store_dir):
    app = create_app(WebConfig(store=store_dir, token=TOKEN))
    return app.test_client()
