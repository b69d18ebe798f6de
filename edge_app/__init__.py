"""CytoEdge on-device runtime and the contract every side agrees on.

Imports nothing heavy: numpy, OpenCV and a TFLite interpreter only (never torch,
TensorFlow, ONNX or another package of this repository).
"""

__version__ = "0.1.0"
