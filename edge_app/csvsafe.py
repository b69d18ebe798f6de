"""CSV that a spreadsheet opens as data: text cells starting with a formula prefix are neutralised.

A reviewer's note, a frame's file name or a class name is text the user (or whoever named
the files) typed; a spreadsheet runs a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return as a formula (``=cmd|' /C calc'!A0``). Such text cells get a leading
``'`` (OWASP's advice), which spreadsheets show as text. Numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutral(value: Any) -> Any:
    r"""A text value made safe for a spreadsheet; anything else unchanged.

    >>> neutral("=cmd|' /C calc'!A0"), neutral("-1"), neutral(-1.5), neutral("ok"), neutral("\tx")
    ("'=cmd|' /C calc'!A0", "'-1", -1.5, 'ok', "'\tx")
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows pass through :func:`neutral`."""

    def __init__(self, fh: TextIO, **kwargs: Any) -> None:
        self._w = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([neutral(v) for v in row])
