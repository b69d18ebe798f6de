"""What differs between two labs' pictures of the same kind of cells: stain batch, camera and microscope.

A :class:`LabStyle` changes the generator's stains (haematoxylin, eosin, Orange G and light-green density, a hue
turn of every stain), the camera (white balance, gamma, JPEG quality) and the microscope (illumination falloff
towards the corners, extra focus blur). ``LabStyle()`` (lab A) changes nothing: the generator takes none of
these steps and draws no extra random number, so its output stays byte for byte what it was before labs existed.
Lab B (:data:`LABS`) is another lab: a darker, bluer haematoxylin, paler eosin, a warmer camera with another
gamma and JPEG compression, stronger vignetting and a softer focus.

    edge-train synth --out data/lab-b --lab b
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class LabStyle:
    name: str = "a"
    haematoxylin: float = 1.0  # density factor of the nuclear stain
    eosin: float = 1.0  # of eosinophilic (pink) cytoplasm
    orange_g: float = 1.0  # of keratinised (orange) cytoplasm
    light_green: float = 1.0  # of the cyan / blue-green cytoplasm and the background haze
    stain_hue: float = 0.0  # degrees every stain's absorbance turns about the grey axis
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # camera gains, R G B
    gamma: float = 1.0  # camera response: out = 255 (in / 255) ** (1 / gamma)
    falloff: float = 0.0  # extra illumination loss at the frame's corners (share of the light)
    blur: float = 0.0  # extra focus blur, Gaussian sigma in pixels
    jpeg_quality: int = 0  # 1..100: the camera's JPEG compression; 0 = none

    @property
    def stains_changed(self) -> bool:
        return (self.haematoxylin, self.eosin, self.orange_g, self.light_green, self.stain_hue) != (1, 1, 1, 1, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["white_balance"] = list(self.white_balance)
        return d


LABS: dict[str, LabStyle] = {
    "a": LabStyle(),
    "b": LabStyle(name="b", haematoxylin=1.3, eosin=0.7, orange_g=1.25, light_green=0.8, stain_hue=12.0,
                  white_balance=(1.08, 1.0, 0.86), gamma=0.8, falloff=0.18, blur=0.7, jpeg_quality=60),
}


def lab_style(name: str) -> LabStyle:
    from cytoedge.train.errors import ConfigError

    if name not in LABS:
        raise ConfigError(f"--lab must be one of {', '.join(LABS)}, got {name!r}")
    return LABS[name]


def _turn(v: np.ndarray, degrees: float) -> np.ndarray:
    """``v`` rotated about the grey axis (1, 1, 1) by ``degrees`` (Rodrigues), kept positive."""
    if not degrees:
        return v
    k = np.ones(3) / np.sqrt(3.0)
    t = np.radians(degrees)
    out = v * np.cos(t) + np.cross(k, v) * np.sin(t) + k * np.dot(k, v) * (1 - np.cos(t))
    return out.clip(0.02, None).astype(np.float32)


def stain(palette, lab: LabStyle):
    """The slide's palette as this lab stains it."""
    if not lab.stains_changed:
        return palette
    return replace(palette, nucleus=_turn(palette.nucleus * lab.haematoxylin, lab.stain_hue),
                   pink=_turn(palette.pink * lab.eosin, lab.stain_hue),
                   orange=_turn(palette.orange * lab.orange_g, lab.stain_hue),
                   cyan=_turn(palette.cyan * lab.light_green, lab.stain_hue))


def falloff(light: np.ndarray, lab: LabStyle) -> np.ndarray:
    """The light field with the lab's extra corner falloff (quadratic in the distance from the centre)."""
    if not lab.falloff:
        return light
    h, w = light.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / np.float32((w / 2) ** 2 + (h / 2) ** 2)
    return light * (1.0 - np.float32(lab.falloff) * r2)


def lamp(lamp_rgb: np.ndarray, lab: LabStyle) -> np.ndarray:
    return lamp_rgb if lab.white_balance == (1.0, 1.0, 1.0) else lamp_rgb * np.asarray(lab.white_balance)


def camera(img: np.ndarray, lab: LabStyle) -> np.ndarray:
    """Gamma on the float picture in 0..255 (before rounding), in place when it applies."""
    if lab.gamma != 1.0:
        np.clip(img, 0, 255, out=img)
        img[...] = 255.0 * np.power(img / 255.0, 1.0 / lab.gamma)
    return img


def jpeg(bgr: np.ndarray, lab: LabStyle) -> np.ndarray:
    if not lab.jpeg_quality:
        return bgr
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(lab.jpeg_quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else bgr
