"""Slide adequacy: the threshold per preparation and the lab's own figure."""

from __future__ import annotations

import pytest

from cytoedge.edge_app.adequacy import Adequacy, adequacy_threshold
from cytoedge.edge_app.errors import CytoEdgeError


def test_a_slide_one_cell_short_is_unsatisfactory_and_says_how_many_it_has():
    a = Adequacy(4999, adequacy_threshold("conventional"))
    assert not a.adequate and a.missing == 1
    assert a.text().startswith("unsatisfactory: 4 999 of 5 000")
    assert Adequacy(2000, adequacy_threshold("liquid-based")).adequate


@pytest.mark.parametrize("prep, cells", [("smear", None), ("conventional", 0)])
def test_an_unknown_preparation_or_a_zero_threshold_is_refused_with_the_choices(prep, cells):
    with pytest.raises(CytoEdgeError, match="adequacy"):
        adequacy_threshold(prep, min_cells=cells)
