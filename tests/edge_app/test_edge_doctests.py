"""The examples in the device runtime's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["edge_app.finder", "edge_app.display", "edge_app.report", "edge_app.resume",
                                    "edge_app.csvsafe", "edge_app.configfile", "benchmarks.finder_accuracy",
                                    "edge_app.confidence", "edge_app.classes", "edge_app.card", "edge_app.crop_features"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
