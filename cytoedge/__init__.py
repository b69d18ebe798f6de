"""CytoEdge: cervical-cell screening help on a small computer beside the microscope.

The four commands live in four sub-packages (the repository's folders, installed under this
name so that no generic top-level ``train`` or ``convert`` module is claimed):

- ``cytoedge.train``      ``edge-train``   (torch)
- ``cytoedge.convert``    ``edge-convert`` (torch, onnx2tf, TensorFlow)
- ``cytoedge.edge_app``   ``edge-app``     (numpy, OpenCV, LiteRT only)
- ``cytoedge.benchmarks`` ``bench-device``

The API below is loaded lazily: ``import cytoedge`` and ``cytoedge.Classifier`` never import
torch or TensorFlow.
"""
from __future__ import annotations

from pathlib import Path as _Path

# In a source checkout (pyproject.toml and the four folders beside this one) the folders are
# this package's sub-packages without an install; an installed wheel maps them itself.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "edge_app" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 - a package's __path__

del _Path, _root

__all__ = ["train", "convert", "bench", "Classifier"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``train`` / ``convert`` (callable sub-packages), ``bench`` and ``Classifier``, imported when first used."""
    import importlib

    if name in ("train", "convert"):
        return importlib.import_module(f"cytoedge.{name}")
    if name in ("bench", "Classifier"):
        return getattr(importlib.import_module("cytoedge.api"), name)
    raise AttributeError(f"module 'cytoedge' has no attribute {name!r}")
