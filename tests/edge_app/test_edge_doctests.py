"""The examples in the device runtime's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["cytoedge.edge_app.finder", "cytoedge.edge_app.display", "cytoedge.edge_app.report", "cytoedge.edge_app.resume",
                                    "cytoedge.edge_app.csvsafe", "cytoedge.edge_app.configfile", "cytoedge.benchmarks.finder_accuracy",
                                    "cytoedge.edge_app.confidence", "cytoedge.edge_app.classes", "cytoedge.edge_app.card", "cytoedge.edge_app.crop_features",
                                    "cytoedge.edge_app.adequacy", "cytoedge.edge_app.review_order"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
