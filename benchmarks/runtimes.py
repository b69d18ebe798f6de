"""One runner per format: load an artifact, feed it preprocessed NHWC crops, get (logits, embedding).

The runtime libraries are imported inside the functions that need them: a Pi with
only the [edge] dependencies runs the TFLite rows and reports the others as
unavailable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.edge_app.card import ArtifactEntry, ModelCard
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.formats import get_format
from cytoedge.edge_app.preprocess import dequantize, quantize


class RuntimeUnavailableError(CytoEdgeError):
    """The library a format needs (onnxruntime, torch) is not installed here."""


def tflite_interpreter_class(prefer: str | None = None) -> tuple[Any, Any]:
    """``(Interpreter class, OpResolverType enum or None)`` of the runtime edge_app would use."""
    from cytoedge.edge_app.interpreter import interpreter_class

    _, cls, _ = interpreter_class(prefer)
    return cls, getattr(sys.modules.get(cls.__module__), "OpResolverType", None)


def runtime_versions() -> dict[str, str]:
    """Versions of the runtimes present (absent ones are left out); imports nothing heavy that is missing."""
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("numpy", "opencv-python", "opencv-python-headless", "ai-edge-litert", "tflite-runtime",
                 "tensorflow", "onnx", "onnxruntime", "torch", "torchvision", "timm", "rich", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class Runner:
    """A loaded artifact. ``run(x)`` takes ``batch x H x W x 3`` float32 in the artifact's input space."""

    batch: int

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Drop the loaded model (a runner is not used after this)."""


class TFLiteRunner(Runner):
    def __init__(self, path: Path, entry: ArtifactEntry, threads: int, batch: int) -> None:
        from cytoedge.edge_app.interpreter import load_interpreter

        self.interp = load_interpreter(path, threads).interpreter
        inp = self.interp.get_input_details()[0]
        if int(inp["shape"][0]) != batch:
            shape = list(map(int, inp["shape"]))
            shape[0] = batch
            self.interp.resize_tensor_input(inp["index"], shape)
        self.interp.allocate_tensors()
        self.batch = batch
        self.input = self.interp.get_input_details()[0]
        details = self.interp.get_output_details()
        by_name = {d["name"]: d for d in details}
        self.outputs = []
        for key in ("logits", "embedding"):
            spec = entry.outputs[key]
            if 0 <= spec.index < len(details):  # the position first: onnx2tf renames outputs (as edge_app does)
                self.outputs.append((details[spec.index]["index"], spec.quant))
            elif spec.name in by_name:
                self.outputs.append((by_name[spec.name]["index"], spec.quant))
            else:
                raise CytoEdgeError(f"{path} has no output named {spec.name!r} (its card's {key}): "
                                    "convert the model again")
        self.in_quant = entry.input.quant

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.interp.set_tensor(self.input["index"], quantize(x, self.in_quant))
        self.interp.invoke()
        logits, emb = (dequantize(self.interp.get_tensor(i), q) for i, q in self.outputs)
        return logits, emb

    def close(self) -> None:
        del self.interp


class OnnxRunner(Runner):
    def __init__(self, path: Path, entry: ArtifactEntry, threads: int, batch: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailableError("the onnx format needs onnxruntime (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.batch = batch
        self.input_name = self.sess.get_inputs()[0].name
        self.output_names = [entry.outputs["logits"].name, entry.outputs["embedding"].name]
        self.nchw = entry.input.layout.upper() != "NHWC"

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.nchw else x
        logits, emb = self.sess.run(self.output_names, {self.input_name: feed})
        return np.asarray(logits, np.float32), np.asarray(emb, np.float32)

    def close(self) -> None:
        del self.sess


class TorchRunner(Runner):
    def __init__(self, path: Path, entry: ArtifactEntry, threads: int, batch: int) -> None:
        try:
            import torch
        except ImportError:
            raise RuntimeUnavailableError("the torch format needs PyTorch (pip install torch torchvision timm)") from None
        from cytoedge.train.bundle import read_bundle

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = read_bundle(path.parent).load_model()
        self.batch = batch

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            logits, emb = self.model(self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
        return logits.numpy(), emb.numpy()

    def close(self) -> None:
        del self.model


_RUNNERS = {"litert": TFLiteRunner, "onnxruntime": OnnxRunner, "torch": TorchRunner}


def import_runtime(fmt: str) -> None:
    """Import the library behind ``fmt`` (so its import cost can be measured apart from the model's)."""
    runtime = get_format(fmt).runtime
    if runtime == "litert":
        tflite_interpreter_class()
    elif runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise RuntimeUnavailableError("the onnx format needs onnxruntime (pip install onnxruntime)") from None
    else:
        try:
            import torch  # noqa: F401

            import cytoedge.train.models.nets  # noqa: F401 - torchvision / timm
        except ImportError:
            raise RuntimeUnavailableError("the torch format needs PyTorch (pip install torch torchvision timm)") from None


def load_runner(card: ModelCard, fmt: str, *, threads: int, batch: int = 1, verify: bool = True) -> Runner:
    """Load ``fmt`` of the model described by ``card`` (hash checked unless ``verify=False``)."""
    path = card.verify_artifact(fmt) if verify else card.artifact_path(fmt)
    return _RUNNERS[get_format(fmt).runtime](path, card.artifact(fmt), threads, batch)


def input_normalized(entry: ArtifactEntry) -> bool:
    """Whether the artifact expects mean/std applied (else raw 0..255 pixels)."""
    return entry.input.space != "pixels"


def random_input(card: ModelCard, fmt: str, batch: int, seed: int = 0) -> np.ndarray:
    """A reproducible ``batch x size x size x 3`` input in the artifact's input space."""
    size = card.preprocessing.size
    rng = np.random.default_rng(seed)
    if input_normalized(card.artifact(fmt)):
        return rng.standard_normal((batch, size, size, 3), dtype=np.float32)
    return rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
