"""SIPaKMeD .dat outlines: read as the download writes them (commas or spaces), written back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.outlines import OutlineError, outline_bbox, parse_outline, read_outline, write_outline


@pytest.mark.parametrize("text", [
    "1,2\n3,4\n5,6\n",
    "1 2\n3 4\n5 6",
    "  1.0e0 ,\t2\r\n3\t4\r\n\r\n5   6.000\r\n",
    "# traced by hand\n1;2\n3;4\n5;6\n",
])
def test_parse_accepts_the_separators_seen_in_copies(text):
    assert parse_outline(text).tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("text, match", [
    ("1,2\n3,4\n", "at least 3"),
    ("1,2\n3,4\n5,6,7\n", "line 3"),
    ("1,2\nx,4\n5,6\n", "line 2"),
    ("1,2\n3,nan\n5,6\n", "non-finite"),
])
def test_parse_refuses_what_is_not_an_outline(text, match):
    with pytest.raises(OutlineError, match=match):
        parse_outline(text)


def test_write_then_read_round_trips(tmp_path):
    pts = np.array([[10.04, 20.0], [30.26, 20.5], [29.5, 40.75], [-0.04, 3.0]])
    path = write_outline(tmp_path / "001_cyt01.dat", pts)
    assert path.read_text().splitlines()[-1] == "0.0,3.0"  # never "-0.0"
    np.testing.assert_allclose(read_outline(path), np.round(pts, 1), atol=1e-9)
    assert not [p for p in tmp_path.iterdir() if p.name != "001_cyt01.dat"]  # no temp file left


def test_read_missing_file_is_a_typed_one_line_error(tmp_path):
    with pytest.raises(OutlineError, match="cannot read outline") as info:
        read_outline(tmp_path / "nope.dat")
    assert isinstance(info.value, CytoEdgeError) and "\n" not in str(info.value)


def test_bbox_holds_every_point():
    pts = np.array([[10.2, 20.0], [30.0, 20.5], [29.5, 40.7]])
    x, y, w, h = outline_bbox(pts)
    assert (x, y, w, h) == (10, 20, 20, 21)
    assert (pts[:, 0] >= x).all() and (pts[:, 0] <= x + w).all() and (pts[:, 1] <= y + h).all()
