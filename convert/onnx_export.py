"""PyTorch -> ONNX: two named outputs (``logits``, ``embedding``), simplified, checked, with metadata.

``space="pixels"`` puts the normalisation inside the graph as a per-channel 1x1
depthwise convolution (``x / (255 std) - mean / std``), so the model takes 0..255
pixels; quantised, that input is exactly the uint8 crop (scale 1, zero point 0).
A depthwise convolution rather than Sub/Div because onnx2tf 1.29 mis-broadcasts a
``[1,3,1,1]`` constant against a batch-dynamic NHWC input.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import StageError
from edge_app.preprocess import PreprocessSpec

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "embedding")
OPSET = 17  # ENV.md: the TorchScript exporter at opset 17 works for all five registered models


def export_module(net: Any, spec: PreprocessSpec, space: str) -> Any:
    """``net`` (forward -> (logits, embedding)) wrapped for export; with ``space="pixels"`` it normalises itself."""
    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.pixels = space == "pixels"
            std = torch.tensor(spec.std, dtype=torch.float32)
            mean = torch.tensor(spec.mean, dtype=torch.float32)
            self.register_buffer("scale", (1.0 / (255.0 * std)).view(3, 1, 1, 1))
            self.register_buffer("shift", -mean / std)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if self.pixels:
                x = torch.nn.functional.conv2d(x, self.scale, self.shift, groups=3)
            return self.net(x)

    return Exported().eval()


def export_onnx(net: Any, spec: PreprocessSpec, path: Path, *, space: str = "normalized",
                dynamic_batch: bool = False, metadata: dict[str, Any] | None = None) -> list[int | str]:
    """Write ``path``; returns the input shape (NCHW, ``"batch"`` where dynamic)."""
    import onnx
    import torch

    module = export_module(net, spec, space)
    dummy = torch.zeros(1, 3, spec.size, spec.size)
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, (dummy,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is this stage's failure
        raise StageError("onnx-export", f"torch.onnx.export: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    model = _simplify(onnx.load(str(path)))
    if metadata:
        onnx.helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise StageError("onnx-export", f"onnx.checker: {str(exc).splitlines()[0]}") from None
    onnx.save(model, str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else d.dim_value for d in dims]


def _simplify(model: Any) -> Any:
    from onnxsim import simplify

    try:
        simplified, ok = simplify(model)
    except Exception as exc:  # noqa: BLE001
        raise StageError("onnx-simplify", f"onnxsim: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not ok:
        raise StageError("onnx-simplify", "onnxsim could not validate the simplified model against the original")
    return simplified


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (strings; JSON where the value is a list or dict)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def compare_with_torch(net: Any, path: Path, x: np.ndarray, *, rtol: float = 1e-3) -> float:
    """Largest |ONNX - PyTorch| over both outputs for NCHW float inputs ``x``; a StageError beyond ``rtol``."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = [t.numpy() for t in net(torch.from_numpy(x))]
    got = [np.concatenate(parts) for parts in zip(*(sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x[i:i + 1]})
                                                     for i in range(len(x))))]
    err = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
    scale = max(1.0, max(float(np.abs(r).max()) for r in ref))
    if err > rtol * scale:
        raise StageError("onnx-export", f"ONNX Runtime differs from PyTorch by {err:.3g} (allowed {rtol * scale:.3g})")
    return err
