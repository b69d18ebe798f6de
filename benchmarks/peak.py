"""The board's compute peak: one large 1x1 convolution through XNNPACK, int8 and fp32, per thread count.

A roofline needs the roof. ``bench-device`` measures it on the board it runs on with one
convolution large enough that XNNPACK spends its time in its GEMM micro-kernels (a 1x1
convolution is a matrix product: ``H*W`` rows, ``Cin`` deep, ``Cout`` wide), and reports
every model's achieved MACs per second as a fraction of it (:func:`roofline`).

The one-op model is **built on the board, at run time, from LiteRT's own flatbuffer schema**
(``ai_edge_litert.schema_py_generated`` + ``flatbuffers``, both installed with
``ai-edge-litert``): it needs only the ``[edge]`` dependencies (a Pi has no TensorFlow), it
matches the schema of the runtime that runs it, and no binary file has to be shipped or
kept in step with the converter. A test checks its output against a numpy reference of the
same integer convolution, and its MAC count through :mod:`benchmarks.flops`.

Only the compute roof is measured (no memory-bandwidth roof): these models are small enough
that weights and activations stay in the caches of a Pi 4 / 5 and of x86 hosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cytoedge.edge_app.errors import CytoEdgeError


@dataclass(frozen=True)
class PeakShape:
    """One 1x1 convolution: ``height x width x cin -> cout`` (MACs = h * w * cin * cout)."""

    height: int = 28
    width: int = 28
    cin: int = 512
    cout: int = 512

    @property
    def macs(self) -> int:
        return self.height * self.width * self.cin * self.cout


# 205.5 M MACs; the fastest of four shapes tried (README "bench-device", its roofline paragraph)
DEFAULT_SHAPE = PeakShape()


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError as exc:
        raise CytoEdgeError(f"the peak measurement builds its model with ai-edge-litert's schema, which cannot be "
                            f"imported ({exc}): pip install ai-edge-litert") from None
    return schema, flatbuffer_utils


def conv_model(shape: PeakShape = DEFAULT_SHAPE, dtype: str = "int8", seed: int = 0) -> bytes:
    """A ``.tflite`` holding one CONV_2D (1x1, stride 1, no activation), random weights, batch 1.

    int8: int8 input/output (scale 0.05 / zero point 0 in, scale 2.0 out), per-channel int8
    weights, int32 bias, as TFLiteConverter writes a full-integer convolution. fp32: float32 throughout.
    """
    if dtype not in ("int8", "fp32"):
        raise ValueError(f"dtype must be int8 or fp32, got {dtype!r}")
    schema, fb = _schema()
    rng = np.random.default_rng(seed)
    T = schema.TensorType
    n, h, w, ci, co = 1, shape.height, shape.width, shape.cin, shape.cout

    def buffer(data: np.ndarray | None) -> Any:
        b = schema.BufferT()
        b.data = None if data is None else np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        return b

    def tensor(name: str, dims: list[int], ttype: int, buf: int, scale: list[float] | None = None,
               zero: list[int] | None = None, axis: int = 0) -> Any:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, dims, ttype, buf
        if scale is not None:
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = scale, zero, axis
            t.quantization = q
        return t

    if dtype == "int8":
        weights = rng.integers(-127, 128, (co, 1, 1, ci), dtype=np.int8)
        w_scale = list(rng.uniform(0.002, 0.004, co).astype(np.float32).astype(float))
        bias = rng.integers(-1000, 1000, co, dtype=np.int32)
        in_scale, out_scale = 0.05, 2.0
        tensors = [
            tensor("input", [n, h, w, ci], T.INT8, 1, [in_scale], [0]),
            tensor("weights", [co, 1, 1, ci], T.INT8, 2, w_scale, [0] * co, 0),
            tensor("bias", [co], T.INT32, 3, [in_scale * s for s in w_scale], [0] * co, 0),
            tensor("output", [n, h, w, co], T.INT8, 4, [out_scale], [0]),
        ]
    else:
        weights = rng.standard_normal((co, 1, 1, ci)).astype(np.float32) * 0.05
        bias = rng.standard_normal(co).astype(np.float32)
        tensors = [tensor("input", [n, h, w, ci], T.FLOAT32, 1), tensor("weights", [co, 1, 1, ci], T.FLOAT32, 2),
                   tensor("bias", [co], T.FLOAT32, 3), tensor("output", [n, h, w, co], T.FLOAT32, 4)]
    options = schema.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = schema.Padding.VALID, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    options.fusedActivationFunction = schema.ActivationFunctionType.NONE
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.Conv2DOptions, options
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [0], [3], [op], "main"
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = 3 if dtype == "int8" else 1  # version 3: per-channel int8
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.description = f"cytoedge peak: 1x1 conv {h}x{w}x{ci}->{co} {dtype}"
    model.buffers = [buffer(None), buffer(None), buffer(weights), buffer(bias), buffer(None)]
    return bytes(fb.convert_object_to_bytearray(model))


def measure_peak(threads: list[int], opts: Any = None, shape: PeakShape = DEFAULT_SHAPE,
                 dtypes: tuple[str, ...] = ("int8", "fp32")) -> dict[str, Any]:
    """``{"shape": ..., "macs": ..., "int8": {"1": {"p50_ms", "gmacs_per_s", ...}, ...}, "fp32": {...}}``.

    ``gmacs_per_s`` is MACs / p50 (the same statistic the model rows report, so their ratio is
    fair on a busy host too); ``best_gmacs_per_s`` is MACs / the fastest run.
    A runtime that cannot build or run the model leaves ``{"error": why}`` for that dtype.
    """
    from cytoedge.benchmarks.latency import LatencyOptions, measure
    from cytoedge.benchmarks.runtimes import tflite_interpreter_class

    opts = opts or LatencyOptions(warmup=5, min_time=1.0, min_runs=20)
    out: dict[str, Any] = {"op": "CONV_2D 1x1", "shape": [shape.height, shape.width, shape.cin, shape.cout],
                           "macs": shape.macs}
    for dtype in dtypes:
        per: dict[str, Any] = {}
        try:
            content = conv_model(shape, dtype)
            cls = tflite_interpreter_class()[0]
            for t in threads:
                interp = cls(model_content=content, num_threads=t)
                interp.allocate_tensors()
                d = interp.get_input_details()[0]
                interp.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
                stats = measure(interp.invoke, opts)
                per[str(t)] = {"p50_ms": stats.p50_ms, "min_ms": stats.min_ms, "runs": stats.runs,
                               "gmacs_per_s": shape.macs / stats.p50_ms / 1e6,
                               "best_gmacs_per_s": shape.macs / stats.min_ms / 1e6}
        except (CytoEdgeError, RuntimeError, ValueError) as exc:
            per = {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}
        out[dtype] = per
    return out


def peak_dtype(fmt: str) -> str | None:
    """The peak a format's latency is compared with: int8 for tflite-int8, fp32 for the float runtimes."""
    return {"tflite-int8": "int8", "tflite-fp32": "fp32", "onnx": "fp32", "torch": "fp32"}.get(fmt)


def roofline(row: dict[str, Any], macs: float | None, peak: dict[str, Any] | None) -> dict[str, float] | None:
    """A latency row's achieved GMAC/s and its fraction of the board's peak at the same thread count.

    >>> roofline({"format": "tflite-int8", "threads": 2, "batch": 1, "latency": {"p50_ms": 1.0}}, 1.5e8,
    ...          {"int8": {"2": {"gmacs_per_s": 600.0}}})
    {'gmacs_per_s': 150.0, 'peak_gmacs_per_s': 600.0, 'fraction_of_peak': 0.25}
    """
    if not macs or not peak or row.get("status", "ok") != "ok" or "latency" not in row:
        return None
    achieved = macs * row["batch"] / row["latency"]["p50_ms"] / 1e6
    ref = (peak.get(peak_dtype(row["format"]) or "") or {}).get(str(row["threads"])) or {}
    top = ref.get("gmacs_per_s")
    return {"gmacs_per_s": round(achieved, 3), "peak_gmacs_per_s": round(top, 3) if top else None,
            "fraction_of_peak": round(achieved / top, 4) if top else None}


def main(argv: list[str] | None = None) -> int:
    """``python -m cytoedge.benchmarks.peak [--threads 1,2] [--shape 28,28,512,512]``: the peak alone, printed."""
    import argparse
    import json
    import os

    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.peak", description=main.__doc__)
    p.add_argument("--threads", default=",".join(str(t) for t in sorted({1, os.cpu_count() or 1})))
    p.add_argument("--shape", default=",".join(map(str, (DEFAULT_SHAPE.height, DEFAULT_SHAPE.width,
                                                          DEFAULT_SHAPE.cin, DEFAULT_SHAPE.cout))),
                   help="H,W,CIN,COUT of the 1x1 convolution (default: %(default)s)")
    a = p.parse_args(argv)
    try:
        shape = PeakShape(*(int(v) for v in a.shape.split(",")))
        threads = [int(t) for t in a.threads.split(",")]
    except (TypeError, ValueError):
        raise SystemExit("peak: --shape is H,W,CIN,COUT and --threads a comma-separated list of whole numbers") from None
    print(json.dumps(measure_peak(threads, shape=shape), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
