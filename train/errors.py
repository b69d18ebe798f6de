"""Typed errors of the training side (all are :class:`edge_app.errors.CytoEdgeError`)."""

from cytoedge.edge_app.errors import CytoEdgeError


class DataError(CytoEdgeError):
    """The data folder is missing, empty, or not a tree we can read."""


class ConfigError(CytoEdgeError):
    """A configuration value or file is invalid."""


class ModelError(CytoEdgeError):
    """Unknown model name, or weights that cannot be found or loaded."""


class BundleError(CytoEdgeError):
    """A checkpoint bundle is missing or malformed."""


class CheckpointError(CytoEdgeError):
    """A checkpoint to resume from is damaged or not what edge-train writes."""


class TrainingDivergedError(CytoEdgeError):
    """The loss became NaN or infinite; the run stops before writing a broken model."""

    exit_code = 3
