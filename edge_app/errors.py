"""Typed errors shared by every CytoEdge package.

Library code raises these; only the command-line layer (:mod:`edge_app.clitools`)
turns them into a one-line message and a non-zero exit status. A message must say
what is wrong and what to do, in one line.
"""

from __future__ import annotations


class CytoEdgeError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option)."""

    exit_code = 2


class ModelCardError(CytoEdgeError):
    """A model card is missing, malformed, or of an unknown schema version."""


class ArtifactIntegrityError(ModelCardError):
    """An artifact file is missing or its SHA-256 does not match the model card."""


class InterpreterUnavailableError(CytoEdgeError):
    """No TFLite interpreter (ai-edge-litert, tflite-runtime or TensorFlow) is installed."""


class SourceError(CytoEdgeError):
    """A frame source cannot be opened or stopped delivering for good."""


class CameraUnavailableError(SourceError):
    """A live camera cannot be opened, or delivered nothing for its give-up time: a state of the
    hardware that may pass (a cable reseated, a camera another program held). Exit status 75
    (sysexits' EX_TEMPFAIL), apart from a user's mistake (2), so that the systemd unit starts the
    app again after this one and never after a bad setting (``RestartPreventExitStatus=2``)."""

    exit_code = 75


class StoreError(CytoEdgeError):
    """The result store cannot be opened or written."""


class BoardProfileError(CytoEdgeError):
    """A board profile is unknown or malformed."""
