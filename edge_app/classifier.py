"""Classify cell crops with a converted model, as its model card says.

``Classifier(model_dir)`` reads ``model_card.json`` (schema checked), picks the
artifact (``--format``; by default int8 when the card has an accepted one, else fp32),
checks its SHA-256 against the card, builds the interpreter once, and checks that the
file's input and outputs are what the card promises. :meth:`Classifier.classify` then
resizes every crop as :func:`edge_app.preprocess.preprocess` does and writes the
artifact's input (channel swap and the card's quantisation in one pass,
:func:`edge_app.preprocess.pixels_to_input`) straight into the interpreter's input
buffer, runs them in as few invocations as the artifact allows (``max_batch`` crops
each, never padded), dequantises the outputs and returns, per crop, the class, its
*calibrated* confidence (softmax of the logits divided by the artifact's temperature),
the open-set score fitted on *this artifact's* outputs, and ``unknown`` (score over the
artifact's threshold: not like any class the model knows; or confidence under
``min_confidence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoedge.edge_app.card import ArtifactEntry, ModelCard, TensorSpec, load_card, say_legacy_once
from cytoedge.edge_app.classes import ABNORMAL, UNKNOWN, group_of
from cytoedge.edge_app.confidence import softmax
from cytoedge.edge_app.errors import CytoEdgeError, ModelCardError
from cytoedge.edge_app.formats import get_format
from cytoedge.edge_app.crop_features import crop_features
from cytoedge.edge_app.interpreter import LoadedInterpreter, interpreter_class, load_interpreter
from cytoedge.edge_app.modelcheck import probe_model_file
from cytoedge.edge_app.preprocess import (Quantization, as_bgr_uint8, dequantize, normalize_crop, pixels_to_input, preprocess,
                                 quantize, resize_into)
from cytoedge.edge_app.rejection import OpenSetScore
from cytoedge.edge_app.signing import load_trusted_card

DEVICE_FORMATS = ("tflite-int8", "tflite-fp32")


@dataclass(frozen=True)
class Prediction:
    class_index: int
    class_name: str
    group: str  # the class's clinical group, or "unknown" when flagged
    confidence: float  # calibrated probability of the top class (softmax of logits / the card's temperature)
    score: float  # open-set score (the card's kind, e.g. Mahalanobis distance to the nearest class); higher = less cell-like
    unknown: bool
    reason: str = ""  # why unknown: "not like any known class" and/or "low confidence"
    p_abnormal: float = 0.0  # calibrated probability of the abnormal group (sum over its classes): the gallery's order


def choose_format(card: ModelCard, fmt: str | None = None, *, allow_rejected: bool = False) -> str:
    """The artifact to run: ``fmt`` if given, else int8 when the card has an accepted one, else fp32."""
    if fmt is not None:
        if not get_format(fmt).device:
            raise CytoEdgeError(f"format {fmt!r} does not run on the device: use {' or '.join(DEVICE_FORMATS)}")
        entry = card.artifact(fmt)
        if entry.status != "ok" and not allow_rejected:
            raise ModelCardError(f"the {fmt} artifact was rejected by edge-convert ({entry.status_reason or entry.status}):"
                                 f" use --format {_other(fmt)}, convert again, or pass --allow-rejected")
        return fmt
    usable = [f for f in DEVICE_FORMATS if f in card.artifacts and (card.artifacts[f].status == "ok" or allow_rejected)]
    if not usable:
        have = ", ".join(f"{k} ({a.status})" for k, a in card.artifacts.items()) or "none"
        raise ModelCardError(f"the model card in {card.directory} has no usable TFLite artifact (it has: {have}): "
                             "run edge-convert on the bundle")
    return usable[0]


def _other(fmt: str) -> str:
    return DEVICE_FORMATS[1 - DEVICE_FORMATS.index(fmt)]


class Classifier:
    """Built once per run; :meth:`classify` takes all crops of a frame."""

    def __init__(self, model: str | Path, fmt: str | None = None, *, threads: int = 1, min_confidence: float = 0.0,
                 prefer: str | None = None, allow_rejected: bool = False, trust: Sequence[str | Path] = (),
                 probe: bool = True) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise CytoEdgeError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
        # trust: public keys, one of which must have signed the card (edge_app.signing);
        # probe: load and invoke the file once in a child process first (edge_app.modelcheck)
        self.card = load_trusted_card(model, trust) if trust else load_card(model)
        self.format = choose_format(self.card, fmt, allow_rejected=allow_rejected)
        say_legacy_once(self.card)  # an older card runs with its old rule: said once per process
        self.entry: ArtifactEntry = self.card.artifact(self.format)
        self.path = self.card.verify_artifact(self.format)
        self.min_confidence = min_confidence
        self.class_names = list(self.card.class_names)
        self.groups = dict(self.card.class_groups)
        self.spec = self.card.preprocessing
        if probe:
            runtime, _, version = interpreter_class(prefer)
            probe_model_file(self.path, self.entry.sha256, runtime, version, max_batch=int(self.entry.max_batch))
        self.loaded: LoadedInterpreter = load_interpreter(self.path, threads, prefer)
        self._interp = self.loaded.interpreter
        self._input = self._check_input(self.entry.input)
        self._out_logits = self._find_output("logits", len(self.class_names))
        self._out_embedding = self._find_output("embedding", self.card.embedding_dim)
        self.max_batch = max(1, int(self.entry.max_batch))
        self._batch = int(self._interp.get_input_details()[0]["shape"][0])
        self._resize(self.max_batch)  # size the arena once for the largest batch: smaller ones then re-plan in ~0.05 ms
        if self.entry.open_set is None:
            raise ModelCardError(f"the model card's {self.format} entry has no open-set score: convert the model again")
        self.open_set: OpenSetScore = self.entry.open_set
        self.threshold = self.open_set.threshold
        self.temperature = self.entry.temperature
        self.invocations = 0
        self._stage: np.ndarray | None = None  # uint8 crops resized, before the input pass
        self._want_features, self._features = False, []  # classify: the open-set score's picture statistics

    # -- checks against the card -----------------------------------------------------------------
    def _fail(self, what: str) -> ModelCardError:
        return ModelCardError(f"{self.path.name} does not match its model card: {what}; convert the model again")

    def _check_input(self, spec: TensorSpec) -> dict:
        details = self._interp.get_input_details()
        if len(details) != 1:
            raise self._fail(f"it has {len(details)} inputs, the device feeds one")
        d = details[0]
        shape = [int(v) for v in d["shape"]]
        size = self.spec.size
        if spec.layout and spec.layout != "NHWC":
            raise self._fail(f"input layout {spec.layout}, TFLite artifacts are NHWC")
        if shape[1:] != [size, size, 3]:
            raise self._fail(f"input shape {shape}, the card's preprocessing makes {size}x{size}x3")
        dtype = np.dtype(d["dtype"]).name
        if dtype != np.dtype(spec.dtype).name:
            raise self._fail(f"input dtype {dtype}, the card says {spec.dtype}")
        if spec.quant.is_quantized:
            scale, zero = d["quantization"]
            if not np.isclose(scale, spec.quant.scale, rtol=1e-5) or int(zero) != spec.quant.zero_point:
                raise self._fail(f"input quantisation ({scale:.6g}, {zero}), the card says "
                                 f"({spec.quant.scale:.6g}, {spec.quant.zero_point})")
        return d

    def _find_output(self, role: str, width: int) -> dict:
        details = self._interp.get_output_details()
        spec = self.entry.outputs.get(role)
        found = None
        if spec is not None and 0 <= spec.index < len(details):
            found = details[spec.index]
        elif spec is not None and any(d["name"] == spec.name for d in details):
            found = next(d for d in details if d["name"] == spec.name)
        else:
            by_width = [d for d in details if int(d["shape"][-1]) == width]
            if len(by_width) == 1:
                found = by_width[0]
        if found is None:
            raise self._fail(f"no output for {role!r} (outputs: {[d['name'] for d in details]})")
        if int(found["shape"][-1]) != width:
            raise self._fail(f"{role} output has width {int(found['shape'][-1])}, expected {width}")
        return found

    # -- inference -------------------------------------------------------------------------------
    def _dequant(self, out: dict, values: np.ndarray) -> np.ndarray:
        scale, zero = out["quantization"]
        if np.dtype(out["dtype"]) in (np.int8, np.uint8) and scale > 0:
            return dequantize(values, Quantization(float(scale), int(zero), np.dtype(out["dtype"]).name))
        return values.astype(np.float32)

    def _resize(self, n: int) -> None:
        """Input batch ``n`` (exactly the crops at hand: no padding); the interpreter re-plans only when it changes."""
        if n != self._batch:
            self._interp.resize_tensor_input(self._input["index"], [n, self.spec.size, self.spec.size, 3])
            self._interp.allocate_tensors()
            self._batch = n

    def write_input(self, crops: Sequence[np.ndarray]) -> None:
        """What :meth:`classify` does before invoking: resize every crop into a staging batch, then write the
        artifact's input straight into the interpreter's own input buffer in one vectorised pass (channel swap
        + quantisation). The interpreter's batch must already be ``len(crops)``."""
        n = len(crops)
        if self._stage is None or len(self._stage) < n:
            self._stage = np.empty((max(n, self.max_batch), self.spec.size, self.spec.size, 3), np.uint8)
        stage = self._stage[:n]
        for i, crop in enumerate(crops):
            resize_into(as_bgr_uint8(crop), self.spec, stage[i])
        buf = self._interp.tensor(self._input["index"])()  # a view: dropped before invoke (LiteRT checks)
        try:
            pixels_to_input(stage, self.spec, self.entry.input.space, self.entry.input.quant, buf)
        finally:
            del buf

    def _run(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One invocation over ``len(crops)`` crops (BGR uint8 images of any size). With an open-set score that
        reads pixels, their statistics are taken from the staged crops on the way (:attr:`_features`)."""
        self._resize(len(crops))
        self.write_input(crops)
        if self._want_features:  # the staged crops are the model's pixels in BGR: the statistics ignore the order
            self._features.append(crop_features(self._stage[:len(crops)], self.open_set.image_size))
        return self._invoke(len(crops))

    def _invoke(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Invoke on the input in place (batch ``n``); the dequantised logits and embeddings."""
        self._interp.invoke()
        self.invocations += 1
        logits = self._dequant(self._out_logits, self._interp.get_tensor(self._out_logits["index"]))
        emb = self._dequant(self._out_embedding, self._interp.get_tensor(self._out_embedding["index"]))
        return logits.reshape(n, -1), emb.reshape(n, -1)

    def pixels(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The crops as the model sees them: resized, centre-cropped, model channel order, 0..255 (``N x S x S x 3``)."""
        if not crops:
            return np.zeros((0, self.spec.size, self.spec.size, 3), np.float32)
        return np.stack([preprocess(c, self.spec, channel_order="BGR", normalize=False) for c in crops])

    def raw_outputs(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Dequantised logits and embeddings of the crops (``N x classes``, ``N x D``), in order.

        ``ceil(N / max_batch)`` invocations of exactly the crops at hand (no padding crops).
        """
        if not len(crops):
            return np.zeros((0, len(self.class_names)), np.float32), np.zeros((0, self.card.embedding_dim), np.float32)
        parts = [self._run(crops[start:start + self.max_batch]) for start in range(0, len(crops), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def outputs_of(self, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dequantised logits and embeddings of crops already prepared by :meth:`pixels` (the reference path;
        :meth:`raw_outputs` writes the input straight from the crops)."""
        if not len(px):
            return np.zeros((0, len(self.class_names)), np.float32), np.zeros((0, self.card.embedding_dim), np.float32)
        x = px if self.entry.input.space == "pixels" else np.stack([normalize_crop(c, self.spec) for c in px])
        x = quantize(x, self.entry.input.quant)
        parts = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            self._resize(len(chunk))
            self._interp.set_tensor(self._input["index"], chunk)
            parts.append(self._invoke(len(chunk)))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def classify(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """One :class:`Prediction` per crop (BGR uint8 images of any size), in order."""
        self._want_features, self._features = self.open_set.needs_image, []
        try:
            logits, embs = self.raw_outputs(crops)  # the crops written straight into the input (= pixels + quantize)
        finally:
            self._want_features = False
        features = np.concatenate(self._features) if self._features else None
        if not len(logits):
            return []
        probs = softmax(logits, self.temperature)
        top = probs.argmax(axis=1)
        scores = self.open_set(logits, embs, features)
        abnormal = [i for i, c in enumerate(self.class_names) if group_of(c, self.groups) == ABNORMAL]
        p_ab = probs[:, abnormal].sum(axis=1)
        preds = []
        for i, k in enumerate(top):
            conf, sc = float(probs[i, k]), float(scores[i])
            far = not sc <= self.threshold  # NaN (a broken output) is unknown too
            low = conf < self.min_confidence
            name = self.class_names[k]
            preds.append(Prediction(
                int(k), name, UNKNOWN if (far or low) else group_of(name, self.groups), conf, sc, far or low,
                "; ".join(r for r, on in (("not like any known class", far), ("low confidence", low)) if on),
                float(p_ab[i])))
        return preds
