"""Slide adequacy: enough classifiable squamous cells to screen (the Bethesda criterion).

A conventional smear must show at least 5 000 well-preserved squamous cells, a liquid-based
preparation 2 000. Every SIPaKMeD class is a squamous epithelial cell, so a cell counts when the
device classified it (not flagged unknown). The live camera count (edge-app at the microscope) and
the slide report both read the threshold from here, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CytoEdgeError

# Classifiable squamous cells a slide needs, per preparation (Bethesda 2014).
PREPARATIONS: dict[str, int] = {"conventional": 5000, "liquid-based": 2000}
DEFAULT_PREPARATION = "conventional"


def adequacy_threshold(preparation: str = DEFAULT_PREPARATION, min_cells: int | None = None) -> int:
    """Cells a slide needs: ``min_cells`` when the lab sets it, else the preparation's figure.

    >>> adequacy_threshold()
    5000
    >>> adequacy_threshold("liquid-based")
    2000
    >>> adequacy_threshold("liquid-based", min_cells=300)
    300
    """
    if min_cells is not None:
        if min_cells < 1:
            raise CytoEdgeError(f"adequacy: the cell count a slide needs must be >= 1, not {min_cells}")
        return int(min_cells)
    try:
        return PREPARATIONS[preparation]
    except KeyError:
        raise CytoEdgeError(f"adequacy: unknown preparation {preparation!r}; "
                            f"use one of {', '.join(PREPARATIONS)}") from None


@dataclass(frozen=True)
class Adequacy:
    """A slide's classifiable squamous cells against the threshold it needs."""

    cells: int
    threshold: int

    @property
    def adequate(self) -> bool:
        return self.cells >= self.threshold

    @property
    def missing(self) -> int:
        return max(0, self.threshold - self.cells)

    def text(self) -> str:
        """``adequate`` or ``unsatisfactory: N of T``.

        >>> Adequacy(5210, 5000).text()
        'adequate (5 210 classifiable squamous cells, 5 000 needed)'
        >>> Adequacy(1234, 5000).text()
        'unsatisfactory: 1 234 of 5 000 classifiable squamous cells'
        """
        if self.adequate:
            return f"adequate ({_n(self.cells)} classifiable squamous cells, {_n(self.threshold)} needed)"
        return f"unsatisfactory: {_n(self.cells)} of {_n(self.threshold)} classifiable squamous cells"


def _n(k: int) -> str:
    return f"{k:,}".replace(",", " ")
