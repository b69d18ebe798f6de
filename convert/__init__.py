"""``edge-convert``: checkpoint bundle -> ONNX -> TFLite fp32 + calibrated int8, validated, with a model card."""
