"""The artifact formats, one table keyed by name (convert, edge_app and bench-device all read it)."""

from __future__ import annotations

from dataclasses import dataclass

from cytoedge.edge_app.errors import CytoEdgeError


@dataclass(frozen=True)
class Format:
    name: str  # the key users type: --formats tflite-int8,onnx
    file: str  # file name inside a model folder (beside model_card.json)
    runtime: str  # "litert", "onnxruntime" or "torch"
    precision: str  # "fp32" or "int8"
    device: bool  # can edge_app run it with only the [edge] dependencies?


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("tflite-int8", "model_int8.tflite", "litert", "int8", True),
        Format("tflite-fp32", "model_fp32.tflite", "litert", "fp32", True),
        Format("onnx", "model.onnx", "onnxruntime", "fp32", False),
        Format("torch", "bundle/weights.pt", "torch", "fp32", False),
    )
}


def get_format(name: str) -> Format:
    """Look a format up by its exact name; an unknown name is an error (never a guess)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise CytoEdgeError(f"unknown format {name!r}: choose from {', '.join(FORMATS)}") from None


def parse_formats(text: str) -> list[Format]:
    """``"tflite-int8,onnx"`` -> the two formats, in the order given, without duplicates."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CytoEdgeError(f"no format named in {text!r}: choose from {', '.join(FORMATS)}")
    return [get_format(n) for n in dict.fromkeys(names)]
