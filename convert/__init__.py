"""``edge-convert``: checkpoint bundle -> ONNX -> TFLite fp32 + calibrated int8, validated, with a model card."""

from cytoedge._entry import make_callable

make_callable(__name__)  # cytoedge.convert(...) is the API call (cytoedge.api.convert)
