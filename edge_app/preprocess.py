"""The one preprocessing function: a crop (uint8 image) -> the model's input tensor.

Training's evaluation transform calls this same function, and the device applies it
to every crop, so what the model sees in validation is exactly what it sees beside
the microscope (``tests/train/test_transforms.py`` holds the two equal).

Steps (fixed order): convert to the model's channel order (RGB) -> resize so the
shorter side is ``spec.resize`` (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when
enlarging) -> centre-crop ``spec.size`` x ``spec.size`` -> scale to [0, 1] ->
subtract ``mean``, divide by ``std`` (skipped for an artifact that takes raw pixels)
-> NHWC float32. :func:`to_model_input` then quantises for an int8 artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a crop becomes a model input. Stored in the checkpoint bundle and the model card."""

    size: int = 224  # side of the square model input
    resize: int = 224  # the shorter side is resized to this, then centre-cropped to `size`
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel, RGB, in [0, 1] units
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"  # what the model expects
    interpolation: str = "area-down-linear-up"  # cv2.INTER_AREA shrinking, INTER_LINEAR enlarging
    policy: str = "resize-shorter-center-crop"

    def __post_init__(self) -> None:
        if self.size < 8 or self.resize < self.size:
            raise ValueError(f"preprocessing needs size >= 8 and resize >= size, got size={self.size} resize={self.resize}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("mean", "std"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


def as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any frame a camera or file gives (grey, BGRA, 16-bit, float) -> contiguous HxWx3 uint8 BGR.

    Raises ``ValueError`` for what cannot be an image (None, empty, wrong rank).
    """
    import cv2

    if image is None:
        raise ValueError("no image (None)")
    img = np.asarray(image)
    if img.size == 0:
        raise ValueError("empty image")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(f"not an image: shape {img.shape}")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.floating):
            hi = 1.0 if float(np.nanmax(img)) <= 1.0 else 255.0
            img = np.clip(np.nan_to_num(img) * (255.0 / hi), 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def resize_center_crop(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize so the shorter side is ``spec.resize`` and centre-crop ``spec.size`` (uint8 in, uint8 out)."""
    import cv2

    h, w = image.shape[:2]
    scale = spec.resize / min(h, w)
    nh, nw = max(spec.resize, round(h * scale)), max(spec.resize, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - spec.size) // 2, (nw - spec.size) // 2
    return image[top:top + spec.size, left:left + spec.size]


def preprocess(image: np.ndarray, spec: PreprocessSpec, *, channel_order: str = "BGR",
               normalize: bool = True) -> np.ndarray:
    """One crop -> float32 ``size x size x 3`` in the model's channel order.

    ``channel_order`` is the order of ``image`` (OpenCV gives BGR). With
    ``normalize=False`` the result stays in [0, 255] (for artifacts that fold the
    normalisation into the graph).

    >>> spec = PreprocessSpec(size=32, resize=32)
    >>> x = preprocess(np.full((40, 60, 3), 255, np.uint8), spec)
    >>> x.shape, x.dtype, round(float(x[0, 0, 0]), 4)
    ((32, 32, 3), dtype('float32'), 2.2489)
    """
    import cv2

    img = as_bgr_uint8(image)  # channel-agnostic: grey/alpha/16-bit -> 3 x uint8
    if channel_order != spec.channel_order:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # the swap is its own inverse
    img = resize_center_crop(img, spec)
    return normalize_crop(img, spec) if normalize else img.astype(np.float32)


def resize_into(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray) -> None:
    """:func:`resize_center_crop` of a uint8 ``HxWx3`` image written into ``out`` (``size x size x 3`` uint8).

    Bit-identical to :func:`resize_center_crop`; the common case (a square crop, ``resize ==
    size``) is one ``cv2.resize`` straight into ``out``, with no intermediate image. Channels stay
    in the image's own order (resizing treats them independently, so swapping before or after is
    the same).

    >>> out = np.zeros((32, 32, 3), np.uint8)
    >>> resize_into(np.full((50, 70, 3), 7, np.uint8), PreprocessSpec(32, 40), out)
    >>> int(out.min()), int(out.max())
    (7, 7)
    """
    import cv2

    h, w = image.shape[:2]
    scale = spec.resize / min(h, w)
    nh, nw = max(spec.resize, round(h * scale)), max(spec.resize, round(w * scale))
    if (nh, nw) != (spec.size, spec.size):  # a centre crop remains: resize, then copy the centre
        np.copyto(out, resize_center_crop(image, spec))
    elif (h, w) == (nh, nw):
        np.copyto(out, image)
    else:
        cv2.resize(image, (nw, nh), dst=out, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)


def is_offset_pixels(q: Quantization) -> bool:
    """int8 input that is the pixel minus 128 (scale 1, zero point -128): ``q = pixel XOR 0x80``, no arithmetic."""
    return q.dtype == "int8" and q.scale == 1.0 and q.zero_point == -128


def pixels_to_input(pixels: np.ndarray, spec: PreprocessSpec, space: str, quant: Quantization,
                    out: np.ndarray, *, channel_order: str = "BGR") -> None:
    """Resized crops (uint8 ``N x size x size x 3`` in ``channel_order``) -> the artifact's input, into ``out``.

    Writes exactly what ``quantize(preprocess(crop, spec, normalize=space != "pixels"), quant)``
    gives for each crop, a whole batch per call: the channel swap is one ``cv2.cvtColor`` over
    the batch, an int8 pixel input (:func:`is_offset_pixels`) is then ``pixel XOR 0x80`` in
    place (= pixel - 128 read as int8), a uint8 pixel input of scale 1 is the pixel itself;
    anything else goes through the float steps.

    >>> px = np.array([[[[0, 128, 255]]]], np.uint8)
    >>> out = np.zeros((1, 1, 1, 3), np.int8)
    >>> pixels_to_input(px, PreprocessSpec(8, 8), "pixels", Quantization(1.0, -128, "int8"), out)
    >>> out.tolist()  # RGB order: the BGR pixel reversed, minus 128
    [[[[127, 0, -128]]]]
    """
    swap = channel_order != spec.channel_order
    if space == "pixels" and is_offset_pixels(quant) and out.dtype == np.int8:
        u8 = out.view(np.uint8)
        _in_model_order(pixels, swap, u8)
        np.bitwise_xor(u8, np.uint8(0x80), out=u8)
    elif space == "pixels" and quant.dtype == "uint8" and quant.scale == 1.0 and quant.zero_point == 0 \
            and out.dtype == np.uint8:
        _in_model_order(pixels, swap, out)
    else:
        x = _in_model_order(pixels, swap, np.empty(pixels.shape, np.uint8)).astype(np.float32)
        if space != "pixels":
            x *= 1.0 / 255.0
            x -= np.asarray(spec.mean, np.float32)
            x /= np.asarray(spec.std, np.float32)
        np.copyto(out, quantize(x, quant), casting="unsafe")


def _in_model_order(pixels: np.ndarray, swap: bool, out: np.ndarray) -> np.ndarray:
    """``pixels`` copied into ``out`` (contiguous, same shape), red and blue swapped when ``swap``."""
    import cv2

    if not swap:
        np.copyto(out, pixels)
        return out
    side = pixels.shape[-2]
    src = np.ascontiguousarray(pixels).reshape(-1, side, 3)  # the batch as one tall image: one call
    dst = out.reshape(-1, side, 3)
    if not np.shares_memory(dst, out):
        raise ValueError("pixels_to_input needs a contiguous output array")
    cv2.cvtColor(src, cv2.COLOR_BGR2RGB, dst=dst)
    return out


def normalize_crop(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The last step alone: an already resized and cropped uint8 image -> normalised float32."""
    x = img.astype(np.float32)
    x *= 1.0 / 255.0
    x -= np.asarray(spec.mean, np.float32)
    x /= np.asarray(spec.std, np.float32)
    return x


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec, *, channel_order: str = "BGR",
                     normalize: bool = True) -> np.ndarray:
    """Several crops -> ``N x size x size x 3`` float32 (NHWC)."""
    if not images:
        return np.zeros((0, spec.size, spec.size, 3), np.float32)
    return np.stack([preprocess(im, spec, channel_order=channel_order, normalize=normalize) for im in images])


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation of a tensor: ``real = scale * (q - zero_point)``. ``scale == 0`` means float."""

    scale: float = 0.0
    zero_point: int = 0
    dtype: str = "float32"  # "float32", "int8" or "uint8"

    @property
    def is_quantized(self) -> bool:
        return self.dtype in ("int8", "uint8") and self.scale > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def quantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """Float -> the artifact's input dtype (identity for a float input).

    >>> quantize(np.array([0.0, 1.0, -5.0], np.float32), Quantization(0.02, -14, "int8")).tolist()
    [-14, 36, -128]
    """
    if not q.is_quantized:
        return np.asarray(x, np.float32)
    lo, hi = _INT_RANGE[q.dtype]
    return np.clip(np.round(x / q.scale) + q.zero_point, lo, hi).astype(q.dtype)


def dequantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """The artifact's output -> float32 (identity for a float output)."""
    if not q.is_quantized:
        return np.asarray(x, np.float32)
    return (x.astype(np.float32) - q.zero_point) * q.scale


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PreprocessSpec", "Quantization", "as_bgr_uint8",
    "dequantize", "is_offset_pixels", "normalize_crop", "pixels_to_input", "preprocess", "preprocess_batch",
    "quantize", "resize_center_crop", "resize_into",
]
