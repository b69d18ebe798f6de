"""PyTorch -> ONNX: two named outputs (``logits``, ``embedding``), simplified, checked, with metadata.

``space="pixels"`` makes a model that takes 0..255 pixels, with the normalisation
inside the graph; quantised (convert.tflite), that input is the crop's pixel minus 128
(int8, scale 1, zero point -128). Two ways to put it there:

* ``fold=False`` (the default), or a network whose input does not go straight into a plain
  3-channel convolution: a per-channel 1x1 depthwise convolution (``x / (255 std) - mean /
  std``) before the network (a depthwise convolution rather than Sub/Div because onnx2tf
  1.29 mis-broadcasts a ``[1,3,1,1]`` constant against a batch-dynamic NHWC input). Exact.
* ``fold=True`` (``edge-convert --fold``): folded into the network's first convolution
  (:func:`fold_normalization`: ``W' = W / (255 std)``, ``b' = b - sum W mean / std``), so
  no layer is added and the int8 graph starts with the network's own first convolution.
  Exact inside the image, but at the border the first convolution's zero padding becomes
  pixel 0 instead of the mean colour: measured, that costs more agreement with PyTorch than
  the layer costs time (docs/conversion.md#int8-input-pixels-normalisation-folded-in-decided-and-measured),
  hence not the default.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.convert.errors import StageError
from cytoedge.edge_app.preprocess import PreprocessSpec

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "embedding")
OPSET = 17  # ENV.md: the TorchScript exporter at opset 17 works for all five registered models


def first_conv(net: Any, size: int) -> tuple[str, Any] | None:
    """(name, module) of the convolution that receives the network's input tensor itself, if it is a plain
    3-channel ``nn.Conv2d`` (groups 1) and the first convolution to run; else None."""
    import torch
    from torch import nn

    seen: list[tuple[str, Any, bool]] = []
    x = torch.zeros(1, 3, size, size)
    names = {m: n for n, m in net.named_modules()}

    def hook(module: Any, args: tuple) -> None:
        if not seen:
            seen.append((names[module], module, bool(args) and args[0] is x))

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        return None
    name, conv, direct = seen[0]
    if not direct or conv.in_channels != 3 or conv.groups != 1:
        return None
    return name, conv


def fold_normalization(net: Any, spec: PreprocessSpec) -> tuple[Any, str] | None:
    """A copy of ``net`` taking 0..255 pixels: the mean/std normalisation folded into its first convolution.

    Returns (the copy, the folded convolution's name), or None when the input does not go straight into
    a plain 3-channel convolution (then :func:`export_module` adds a normalisation layer instead).
    """
    import copy

    import torch

    found = first_conv(net, spec.size)
    if found is None:
        return None
    name = found[0]
    folded = copy.deepcopy(net).eval()
    conv = folded.get_submodule(name)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        w = conv.weight.detach().clone()
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(w.shape[0])
        shift = (w * (mean / std)).sum(dim=(1, 2, 3))  # what normalising subtracts, through the kernel
        conv.weight.copy_(w / (255.0 * std))
        if conv.bias is None:
            conv.bias = torch.nn.Parameter(torch.zeros(w.shape[0]))
        conv.bias.copy_(bias - shift)
    return folded, name


def export_module(net: Any, spec: PreprocessSpec, space: str, *, fold: bool = False) -> Any:
    """``net`` (forward -> (logits, embedding)) wrapped for export; with ``space="pixels"`` it normalises itself
    (folded into the first convolution when ``fold`` and possible, else a normalisation layer).
    ``.folded_into`` names the folded convolution ("" when none)."""
    import torch
    from torch import nn

    folded = fold_normalization(net, spec) if space == "pixels" and fold else None

    class Exported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = folded[0] if folded else net
            self.folded_into = folded[1] if folded else ""
            self.pixels = space == "pixels" and not folded
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
                dynamic_batch: bool = False, metadata: dict[str, Any] | None = None,
                module: Any = None) -> list[int | str]:
    """Write ``path``; returns the input shape (NCHW, ``"batch"`` where dynamic).

    ``module``: an :func:`export_module` result to export (default: made here without folding options).
    """
    import onnx
    import torch

    module = module if module is not None else export_module(net, spec, space)
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
