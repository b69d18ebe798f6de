"""The examples in the benchmarks' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["cytoedge.benchmarks.accuracy", "cytoedge.benchmarks.board", "cytoedge.benchmarks.report",
                                    "cytoedge.benchmarks.slide_triage"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
