"""One way to run every artifact on the same crops: ``runner(crops) -> (logits, embedding)``.

Crops are ``N x size x size x 3`` uint8 in the model's channel order (the output of
``preprocess(..., normalize=False)``); each runner applies the rest of the device's
steps for its own input (normalisation, layout, quantisation) and returns float32
logits and embeddings (dequantised for an int8 model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.convert.errors import StageError
from cytoedge.edge_app.card import TensorSpec
from cytoedge.edge_app.preprocess import PreprocessSpec, Quantization, dequantize, normalize_crop, quantize


def normalized(crops: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 NHWC crops -> normalised float32 NHWC, through the device's own normalisation."""
    out = np.empty(crops.shape, np.float32)
    for i, c in enumerate(crops):
        out[i] = normalize_crop(c, spec)
    return out


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, max(1, size))]


class TorchRunner:
    """The bundle's PyTorch model (NCHW, normalised float)."""

    def __init__(self, net: Any, spec: PreprocessSpec, batch: int = 64) -> None:
        self.net, self.spec, self.batch = net.eval(), spec, batch

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        logits, embs = [], []
        with torch.no_grad():
            for sl in _chunks(len(crops), self.batch):
                x = torch.from_numpy(np.ascontiguousarray(normalized(crops[sl], self.spec).transpose(0, 3, 1, 2)))
                lo, em = self.net(x)
                logits.append(lo.numpy())
                embs.append(em.numpy())
        return np.concatenate(logits), np.concatenate(embs)


class OnnxRunner:
    """``model.onnx`` through ONNX Runtime (fixed batch 1: one image per run)."""

    def __init__(self, path: Path, spec: PreprocessSpec, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.spec = spec
        self.input = self.sess.get_inputs()[0].name
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = normalized(crops, self.spec).transpose(0, 3, 1, 2)
        res = [self.sess.run(["logits", "embedding"], {self.input: np.ascontiguousarray(x[i:i + 1])})
               for i in range(len(x))]
        return np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res])


def _quant(d: dict[str, Any]) -> Quantization:
    scale, zero = d["quantization"]
    dtype = np.dtype(d["dtype"]).name
    return Quantization(float(scale), int(zero), dtype) if scale else Quantization()


def describe_tflite(interp: Any, num_classes: int, embedding_dim: int, space: str) -> tuple[TensorSpec, dict[str, TensorSpec]]:
    """Input and output specs of a TFLite model; logits vs embedding told apart by width (onnx2tf renames and reorders)."""
    (inp,) = interp.get_input_details()
    in_spec = TensorSpec(name=inp["name"], shape=[int(v) for v in inp["shape_signature"]], dtype=np.dtype(inp["dtype"]).name,
                         quant=_quant(inp), layout="NHWC", space=space, index=0)
    outputs: dict[str, TensorSpec] = {}
    for pos, d in enumerate(interp.get_output_details()):
        width = int(d["shape"][-1])
        if num_classes == embedding_dim:
            key = "logits" if "logit" in d["name"] else "embedding" if "embed" in d["name"] else None
        else:
            key = {num_classes: "logits", embedding_dim: "embedding"}.get(width)
        if key is None or key in outputs:
            raise StageError("tflite-inspect", f"cannot tell logits from embedding among outputs "
                             f"{[(o['name'], list(o['shape'])) for o in interp.get_output_details()]}")
        outputs[key] = TensorSpec(name=d["name"], shape=[int(v) for v in d["shape_signature"]],
                                  dtype=np.dtype(d["dtype"]).name, quant=_quant(d), index=pos)
    if set(outputs) != {"logits", "embedding"}:
        raise StageError("tflite-inspect", f"expected a logits and an embedding output, found {sorted(outputs)}")
    return in_spec, outputs


class TfliteRunner:
    """A ``.tflite`` file in the real LiteRT interpreter; batches of ``batch`` crops when its batch is dynamic."""

    def __init__(self, path: Path, spec: PreprocessSpec, num_classes: int, embedding_dim: int, space: str,
                 threads: int | None = None, batch: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.spec, self.space = spec, space
        self.input, self.outputs = describe_tflite(self.interp, num_classes, embedding_dim, space)
        self.dynamic = self.input.shape[0] == -1
        self.batch = batch if self.dynamic else 1
        self._details = self.interp.get_output_details()
        self._in_index = self.interp.get_input_details()[0]["index"]
        self._n = 0
        self._resize(1)  # allocate now: a model the interpreter (XNNPACK) cannot prepare fails here

    def _resize(self, n: int) -> None:
        if n != self._n:
            if self.dynamic:
                self.interp.resize_tensor_input(self._in_index, [n, self.spec.size, self.spec.size, 3], strict=True)
            self.interp.allocate_tensors()
            self._n = n

    def inputs(self, crops: np.ndarray) -> np.ndarray:
        x = crops.astype(np.float32) if self.space == "pixels" else normalized(crops, self.spec)
        return quantize(x, self.input.quant)

    def run(self, crops: np.ndarray, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        batch = self.batch if batch is None else batch
        out: dict[str, list[np.ndarray]] = {"logits": [], "embedding": []}
        for sl in _chunks(len(crops), batch):
            x = self.inputs(crops[sl])
            self._resize(len(x))
            self.interp.set_tensor(self._in_index, x)
            self.interp.invoke()
            for key, ts in self.outputs.items():
                raw = self.interp.get_tensor(self._details[ts.index]["index"])
                out[key].append(dequantize(raw, ts.quant))
        return np.concatenate(out["logits"]), np.concatenate(out["embedding"])

    __call__ = run


def batch_difference(runner: TfliteRunner, crops: np.ndarray, batch: int) -> float:
    """Largest |batched - one at a time| over both outputs, in units of the output's resolution."""
    single = runner.run(crops, batch=1)
    batched = runner.run(crops, batch=batch)
    worst = 0.0
    for key, a, b in zip(("logits", "embedding"), single, batched):
        q = runner.outputs[key].quant
        unit = q.scale if q.is_quantized else max(1e-5, 1e-5 * float(np.abs(a).max()))
        worst = max(worst, float(np.abs(a - b).max()) / unit)
    return worst
