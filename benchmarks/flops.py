"""Parameters and multiply-accumulates counted from an artifact's own graph.

* TFLite: the LiteRT interpreter's tensor details and ``_get_ops_details()`` (op
  types, operand shapes), so a Pi without torch or onnx can count.
* ONNX: the graph after ``onnx.shape_inference``.
* PyTorch: ``torch.utils.flop_counter.FlopCounterMode`` (the cross-check).

What is counted: the multiply-accumulates (MACs) of convolutions (plain, grouped,
depthwise, transposed) and matrix products (fully connected, Gemm, MatMul), per
image - the convention of torchvision's published ``_ops`` figures. Element-wise
ops, pooling and normalisation are not counted. ``flops`` is always ``2 * macs``.
Parameters are the weights and biases in the graph (BatchNorm running statistics
and shape constants excluded).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.errors import CytoEdgeError


class FlopCountError(CytoEdgeError):
    """An artifact's graph cannot be counted (unreadable file, missing library)."""


@dataclass
class GraphCost:
    """What one forward pass of one image costs, counted from one graph."""

    source: str  # "tflite-graph", "onnx-graph" or "torch-flopcounter"
    macs: int  # multiply-accumulates per image (conv + matrix products)
    params: int | None  # weights + biases in the graph; None where not countable
    by_op: dict[str, int] = field(default_factory=dict)  # MACs per op type
    uncounted: list[str] = field(default_factory=list)  # compute ops whose shapes were unknown

    @property
    def flops(self) -> int:
        """Floating-point operations per image, ``2 * macs`` (one multiply + one add)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "macs": self.macs, "flops": self.flops, "params": self.params,
                "by_op": dict(self.by_op), "uncounted": list(self.uncounted)}


def _prod(shape: Any) -> int:
    return int(math.prod(int(d) for d in shape))


def _inner_dim(a: Any, b: Any, out: Any) -> int:
    """The contracted dimension K of a matrix product, from the last two dims of A, B and the output.

    (M*K) * (K*N) / (M*N) = K^2 whatever the transposes, so no attribute is needed.
    """
    a2, b2, o2 = (_prod(s[-2:]) if len(s) >= 2 else _prod(s) for s in (a, b, out))
    if len(out) < 2:  # a vector result: K is what A has per output row
        return _prod(a[-1:])
    return int(round(math.sqrt(a2 * b2 / o2))) if o2 else 0


# -- TFLite -------------------------------------------------------------------

_TFLITE_WEIGHT_DTYPES = {"float32", "float16", "int8", "uint8", "int16", "int4"}
_TFLITE_BIAS_SLOT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def _tflite_op_macs(op: str, ins: list[Any], out: Any) -> int | None:
    """MACs of one TFLite op for the batch it was built for; None if the op does no MACs."""
    if op == "CONV_2D":  # w: [Cout, kh, kw, Cin/groups]
        w = ins[1]
        return _prod(out) * _prod(w[1:])
    if op == "DEPTHWISE_CONV_2D":  # w: [1, kh, kw, Cout]
        w = ins[1]
        return _prod(out) * _prod(w[1:3])
    if op == "TRANSPOSE_CONV":  # inputs: output_shape, w [Cout, kh, kw, Cin], x
        w, x = ins[1], ins[2]
        return _prod(x) * _prod(w[:3])
    if op == "FULLY_CONNECTED":  # w: [units, in]
        return _prod(out) * int(ins[1][-1])
    if op == "BATCH_MATMUL":
        return _prod(out) * _inner_dim(ins[0], ins[1], out)
    return None


def load_tflite_graph(path: str | Path) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], list[int], list[int]]:
    """``(ops, tensors by index, graph input indices, graph output indices)`` from a .tflite file.

    The interpreter is built without the default delegates, so the op list is the
    model's own (XNNPACK would fold it into one DELEGATE node).
    """
    from cytoedge.benchmarks.runtimes import tflite_interpreter_class

    interp_cls, op_resolver = tflite_interpreter_class()
    kwargs: dict[str, Any] = {}
    if op_resolver is not None:
        kwargs["experimental_op_resolver_type"] = op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = interp_cls(model_path=str(path), **kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise FlopCountError(f"cannot read TFLite model {path}: {str(exc).splitlines()[0]}") from None
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    ops = list(interp._get_ops_details())  # noqa: SLF001 - the only op-level view LiteRT offers
    inputs = [int(d["index"]) for d in interp.get_input_details()]
    outputs = [int(d["index"]) for d in interp.get_output_details()]
    return ops, tensors, inputs, outputs


def count_tflite(path: str | Path) -> GraphCost:
    """Count MACs and parameters of a .tflite file from its ops and tensor shapes."""
    ops, tensors, inputs, _ = load_tflite_graph(path)
    batch = max(1, int(tensors[inputs[0]]["shape"][0])) if inputs else 1
    produced = {int(i) for op in ops for i in op["outputs"]}
    by_op: Counter[str] = Counter()
    params = 0
    seen: set[int] = set()
    for op in ops:
        name = op["op_name"]
        ins = [list(tensors[int(i)]["shape"]) if int(i) >= 0 else None for i in op["inputs"]]
        out = list(tensors[int(op["outputs"][0])]["shape"]) if len(op["outputs"]) else []
        if all(s is not None for s in ins[:3]):
            macs = _tflite_op_macs(name, ins, out)
            if macs is not None:
                by_op[name] += macs // batch
        for slot, idx in enumerate(int(i) for i in op["inputs"]):
            if idx < 0 or idx in produced or idx in inputs or idx in seen:
                continue
            seen.add(idx)
            t = tensors[idx]
            dtype = np.dtype(t["dtype"]).name
            if dtype in _TFLITE_WEIGHT_DTYPES or (dtype == "int32" and _TFLITE_BIAS_SLOT.get(name) == slot):
                params += _prod(t["shape"])
    return GraphCost("tflite-graph", int(sum(by_op.values())), params, dict(by_op))


def tflite_activation_peak(path: str | Path) -> dict[str, int]:
    """Bytes of the non-constant tensors live at once, walking the ops in execution order.

    An estimate of the interpreter's activation arena (LiteRT does not expose the
    arena size to Python): each tensor lives from the op that writes it to the last
    op that reads it; in-place reuse by the runtime can make the real arena smaller.
    """
    ops, tensors, inputs, outputs = load_tflite_graph(path)
    first: dict[int, int] = {i: -1 for i in inputs}
    last: dict[int, int] = {}
    for k, op in enumerate(ops):
        for i in op["outputs"]:
            first.setdefault(int(i), k)
        for i in op["inputs"]:
            if int(i) in first:
                last[int(i)] = k
    for i in outputs:
        last[i] = len(ops)

    def nbytes(i: int) -> int:
        t = tensors[i]
        return _prod(t["shape"]) * np.dtype(t["dtype"]).itemsize

    events = np.zeros(len(ops) + 3, np.int64)  # position 0: graph inputs, k + 1: op k
    total = 0
    for i, start in first.items():
        b = nbytes(i)
        total += b
        events[start + 1] += b
        events[last.get(i, start) + 2] -= b
    live = np.cumsum(events)
    return {"activation_peak_bytes": int(live.max()) if live.size else 0, "activation_total_bytes": int(total)}


# -- ONNX ---------------------------------------------------------------------

def count_onnx(path: str | Path) -> GraphCost:
    """Count MACs and parameters of an .onnx file (shapes from ``onnx.shape_inference``).

    Shape inference cannot follow shape arithmetic computed in the graph (an
    unsimplified export of ShuffleNetV2's channel split); when some compute op is left
    without shapes and ``onnxsim`` is installed, the graph is simplified in memory (as
    edge-convert does before saving) and counted again. Ops still without shapes are
    listed in ``uncounted``, never guessed.
    """
    try:
        import onnx
    except ImportError:
        raise FlopCountError("counting an ONNX graph needs the onnx package (pip install onnx)") from None
    try:
        model = onnx.load(str(path))
        cost = _count_onnx_model(model)
    except FlopCountError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is not a usable model
        raise FlopCountError(f"cannot read ONNX model {path}: {type(exc).__name__}: {exc}") from None
    if cost.uncounted:
        try:
            from onnxsim import simplify

            simplified, ok = simplify(model)
        except Exception:  # noqa: BLE001 - not installed or cannot simplify: keep the partial count
            return cost
        if ok:
            cost = _count_onnx_model(simplified)
    return cost


def _count_onnx_model(model: Any) -> GraphCost:
    from onnx import helper, shape_inference

    g = shape_inference.infer_shapes(model).graph
    inits = {t.name: t for t in g.initializer}
    shapes: dict[str, list[int | None]] = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        # a symbolic batch dimension counts as 1 (MACs are per image); any other unknown dimension stays unknown
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (1 if k == 0 else None)
                           for k, d in enumerate(dims)]
    graph_inputs = [i for i in g.input if i.name not in inits]
    batch = 1
    if graph_inputs and shapes.get(graph_inputs[0].name):
        batch = max(1, shapes[graph_inputs[0].name][0] or 1)

    by_op: Counter[str] = Counter()
    uncounted: list[str] = []
    stats_inputs: set[str] = set()  # BatchNorm running mean/var: not parameters
    for node in g.node:
        if node.op_type == "BatchNormalization":
            stats_inputs.update(node.input[3:5])
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        x, w = (shapes.get(n) for n in node.input[:2])
        out = shapes.get(node.output[0])
        if not out or x is None or w is None or None in out + x + w:
            uncounted.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":  # w: [Cout, Cin/groups, kh, kw]
            macs = _prod(out) * _prod(w[1:])
        elif node.op_type == "ConvTranspose":  # w: [Cin, Cout/groups, kh, kw]
            macs = _prod(x) * _prod(w[1:])
        else:
            macs = _prod(out) * _inner_dim(x, w, out)
        by_op[node.op_type] += macs // batch
    params = sum(_prod(t.dims) for name, t in inits.items()
                 if name not in stats_inputs and np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).kind == "f")
    return GraphCost("onnx-graph", int(sum(by_op.values())), params, dict(by_op), uncounted)


# -- PyTorch --------------------------------------------------------------------

def count_torch(model: Any, size: int) -> GraphCost:
    """FLOPs of one ``1 x 3 x size x size`` forward pass by ``torch.utils.flop_counter.FlopCounterMode``.

    FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions and matrix
    products, so ``macs = flops / 2`` follows the same convention as the graph counters.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    by_op = {str(k).split(".")[-1]: int(v) // 2 for k, v in counter.get_flop_counts().get("Global", {}).items()}
    params = sum(int(p.numel()) for p in model.parameters())
    return GraphCost("torch-flopcounter", int(counter.get_total_flops()) // 2, params, by_op)
