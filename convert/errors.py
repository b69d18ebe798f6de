"""Typed errors of ``edge-convert`` (all are :class:`edge_app.errors.CytoEdgeError`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cytoedge.edge_app.errors import CytoEdgeError


class ConvertError(CytoEdgeError):
    """The conversion cannot start or cannot go on (bad option, missing data)."""


class CalibrationError(ConvertError):
    """Too few calibration images, or images that do not fit the model's preprocessing."""


class StageError(ConvertError):
    """A conversion stage (export, onnx2tf, validation) failed; the message names the stage and its log."""

    def __init__(self, stage: str, message: str, log: Path | None = None) -> None:
        self.stage, self.log = stage, log
        where = f" (full log: {log})" if log is not None else ""
        super().__init__(f"stage {stage} failed: {message}{where}")


class AccuracyGateError(ConvertError):
    """An artifact lost more accuracy than ``--max-drop`` allows; the card is written with it marked rejected."""

    exit_code = 3

    def __init__(self, message: str, card: Any = None) -> None:
        super().__init__(message)
        self.card = card
