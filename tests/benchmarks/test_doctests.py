"""The examples in the benchmarks' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["benchmarks.accuracy", "benchmarks.board", "benchmarks.report",
                                    "benchmarks.slide_triage"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
