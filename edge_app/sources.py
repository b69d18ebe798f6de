"""Frame sources behind one small interface: ``with open_source(spec) as src: for frame in src: ...``.

``--source`` takes

* ``picam`` or ``picam:N`` - a Raspberry Pi camera through picamera2 (``RGB888``
  arrays are BGR in memory, which is OpenCV's order, so nothing is swapped);
* ``cam:N`` or ``/dev/videoN`` - a V4L2 / USB camera through OpenCV;
* ``gst:PIPELINE`` - a GStreamer pipeline ending in ``appsink`` (Jetson CSI cameras);
* a video file, an image file, a folder of images or a glob (``fields/*.png``).

Files are processed frame by frame, in natural name order, read by
:func:`edge_app.imagefile.read_frame_file`: an unreadable file, an entry that is not a
regular file (a folder named ``x.png``, a FIFO) and a frame over the pixel limit (by its
header, before decoding) become a :class:`Frame` with ``image=None``, an ``error`` and a
``problem`` (the app logs, counts and skips it). Every file and video frame carries a
stable ``key`` (:mod:`edge_app.resume`); a frame the slide already holds comes out with
``committed_as`` set and is not decoded. Live cameras use latest-frame semantics: a grabber thread keeps only
the newest frame, so a slow consumer drops frames instead of lagging behind. A
camera that stops delivering is reopened with exponential back-off; after
``give_up_after`` seconds without a frame the source raises :class:`CameraUnavailableError`
(exit status 75: the systemd unit restarts the app after it).
"""

from __future__ import annotations

import glob
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cytoedge.edge_app.errors import CameraUnavailableError, SourceError
from cytoedge.edge_app.imagefile import DEFAULT_MAX_PIXELS, UNREADABLE, read_frame_file
from cytoedge.edge_app.resume import video_fingerprint, video_key

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpg", ".mjpeg", ".h264", ".mpg"})


@dataclass
class Frame:
    image: np.ndarray | None  # as delivered (any dtype/channels); None when it could not be read
    index: int  # position in this source, from 0
    name: str  # file name, or "cam:0#17" for the 17th frame a camera delivered
    error: str = ""  # why image is None
    time: float = field(default_factory=time.time)
    key: str | None = None  # stable identity (edge_app.resume); None for camera frames
    problem: str = UNREADABLE  # the skip's category when image is None
    committed_as: str | None = None  # the slide already holds this frame (under this name): not decoded


class Capture(Protocol):
    """What a live camera backend offers (cv2.VideoCapture has exactly this)."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


class FrameSource:
    """Base class: iterate for frames; ``stop()`` may be called from a signal handler."""

    live = False
    description = ""

    def __init__(self) -> None:
        self.camera_settings: dict[str, Any] = {}  # what a camera locked for the slide (recorded in the run)
        self._stop = threading.Event()
        self.stats: dict[str, int] = {"frames": 0, "dropped": 0, "reopened": 0, "unreadable": 0}
        self.committed: Callable[[str], str | None] = _nothing_committed

    def resume_with(self, committed: Callable[[str], str | None]) -> None:
        """``committed(key)`` names the frame the slide already holds with that key (else None): such frames
        come out with ``committed_as`` set and no image, without being decoded. Cameras never ask."""
        self.committed = committed

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- files ---------------------------------------------------------------------------------------

def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _nothing_committed(_key: str) -> str | None:
    return None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str]:
    """An image file as stored (16-bit, alpha and grey kept), or ``(None, reason)`` (see edge_app.imagefile)."""
    got = read_frame_file(path, max_pixels=max_pixels)
    return got.image, got.error


class FileListSource(FrameSource):
    """Image files, one frame each, in the order given (anything that is not a regular file is skipped)."""

    def __init__(self, paths: list[Path], description: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_side: int | None = None) -> None:
        super().__init__()
        self.paths = paths
        self.description = description
        self.max_pixels, self.max_side = max_pixels, max_side

    def frames(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            got = read_frame_file(path, max_pixels=self.max_pixels, max_side=self.max_side,
                                  committed=self.committed)
            if got.image is not None:
                self.stats["frames"] += 1
            elif got.committed_as is None:
                self.stats["unreadable"] += 1
            yield Frame(got.image, i, path.name, got.error, key=got.key, problem=got.problem or UNREADABLE,
                        committed_as=got.committed_as)


class VideoFileSource(FrameSource):
    """A video file, every frame in order; frames the slide already holds are passed over undecoded."""

    def __init__(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        import cv2

        super().__init__()
        self.description = str(path)
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open video {path}: is it a video file OpenCV can decode (mp4, avi, mkv)?")
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > max_pixels:
            self._cap.release()
            raise SourceError(f"video {path} has {w}x{h} frames ({w * h / 1e6:.0f} MP), over the limit of "
                              f"{max_pixels / 1e6:g} MP: raise --max-frame-pixels if this is meant")
        self._fingerprint = video_fingerprint(path)

    def frames(self) -> Iterator[Frame]:
        i, name = 0, Path(self.description).name
        while not self._stop.is_set():
            key = video_key(self._fingerprint, i)
            earlier = self.committed(key)
            if earlier is not None:  # resume: step over it without decoding it into an image
                if not self._cap.grab():
                    return
                yield Frame(None, i, f"{name}#{i}", key=key, committed_as=earlier)
            else:
                ok, image = self._cap.read()
                if not ok:
                    return
                self.stats["frames"] += 1
                yield Frame(image, i, f"{name}#{i}", key=key)
            i += 1

    def close(self) -> None:
        super().close()
        self._cap.release()


# -- live cameras --------------------------------------------------------------------------------

class CameraSource(FrameSource):
    """A live camera with a grabber thread, latest-frame semantics and reopen with back-off.

    ``opener`` returns a :class:`Capture`; it is called once at start (a failure there
    is an immediate :class:`SourceError`) and again whenever the camera stops delivering.
    """

    live = True

    def __init__(self, opener: Callable[[], Capture], description: str, *, give_up_after: float = 30.0,
                 backoff: tuple[float, float] = (0.1, 5.0)) -> None:
        super().__init__()
        if give_up_after <= 0:
            raise SourceError(f"camera give-up time must be > 0 s, got {give_up_after}")
        self.description = description
        self._opener = opener
        self.give_up_after = give_up_after
        self.backoff = backoff
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._seq = 0
        self._fatal: SourceError | None = None
        self._last_error = ""
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = self._open(first=True)

    def _open(self, first: bool = False) -> Capture | None:
        try:
            return self._opener()
        except Exception as exc:  # a backend may raise anything; the message is what matters
            self._last_error = " ".join(str(exc).split()) or type(exc).__name__
            if first and isinstance(exc, SourceError):  # a set-up problem (picamera2 not installed): exit 2
                raise
            if first:
                raise CameraUnavailableError(f"cannot open camera {self.description}: {self._last_error}") from None
            return None

    def _grab(self) -> None:
        cap, delay, last_ok = self._cap, self.backoff[0], time.monotonic()
        try:
            while not self._stop.is_set():
                if cap is None:
                    cap = self._open()
                    if cap is not None:
                        self.stats["reopened"] += 1
                        log.warning("camera %s reopened", self.description)
                if cap is not None:
                    try:
                        ok, image = cap.read()
                    except Exception as exc:  # a backend that raises is treated like one that returns False
                        ok, image, self._last_error = False, None, str(exc)
                    if ok and image is not None:
                        with self._cond:
                            self._latest, self._seq = image, self._seq + 1
                            self._cond.notify_all()
                        last_ok, delay = time.monotonic(), self.backoff[0]
                        continue
                    log.warning("camera %s stopped delivering frames; reopening", self.description)
                    _release(cap)
                    cap = None
                if time.monotonic() - last_ok > self.give_up_after:
                    why = f" (last error: {self._last_error})" if self._last_error else ""
                    with self._cond:
                        self._fatal = CameraUnavailableError(
                            f"camera {self.description} delivered no frame for {self.give_up_after:g} s after "
                            f"{self.stats['reopened']} reopen(s){why}: check its cable and power, or raise "
                            "--camera-timeout")
                        self._cond.notify_all()
                    return
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
        finally:
            if cap is not None:
                _release(cap)

    def frames(self) -> Iterator[Frame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._grab, name="cytoedge-grabber", daemon=True)
            self._thread.start()
        taken, index = 0, 0
        while True:
            with self._cond:
                while self._seq == taken and self._fatal is None and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return
                if self._seq == taken:
                    raise self._fatal  # type: ignore[misc]
                if taken:
                    self.stats["dropped"] += self._seq - taken - 1
                image, taken = self._latest, self._seq
            self.stats["frames"] += 1
            yield Frame(image, index, f"{self.description}#{taken}")
            index += 1

    def close(self) -> None:
        super().close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        elif self._cap is not None:
            _release(self._cap)
        self._cap = None


def _release(cap: Capture) -> None:
    try:
        cap.release()
    except Exception as exc:  # releasing a dead camera may fail; nothing else to do
        log.debug("camera release failed: %s", exc)


def _opencv_opener(target: int | str, api_name: str, width: int, height: int, fps: int) -> Callable[[], Capture]:
    def open_() -> Capture:
        import cv2

        api = getattr(cv2, api_name)
        cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot open {target!r} through {api_name}")
        if api_name != "CAP_GSTREAMER":
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                (cv2.CAP_PROP_FPS, fps), (cv2.CAP_PROP_BUFFERSIZE, 1)):
                if value:
                    cap.set(prop, value)
        return cap
    return open_


LOCK_KEYS = ("ExposureTime", "AnalogueGain", "ColourGains")


class _PicamCapture:
    """picamera2 as a :class:`Capture`: a 3-channel ``RGB888`` main stream (BGR byte order).

    A camera that holds still for a slide: after ``lock_after`` seconds of automatic exposure and
    white balance, the measured ``ExposureTime``, ``AnalogueGain`` and ``ColourGains`` (frame
    metadata) are set explicitly with ``AeEnable`` and ``AwbEnable`` off, all in one
    ``set_controls``. Half of it is a known trap: ``AeEnable`` off alone leaves whatever exposure the
    pipeline had (picamera2 issue #362: black frames), and an ``ExposureTime`` with AE still on is
    overridden (#1269). ``held`` keeps the locked values: a camera reopened within the run gets the
    same ones instead of measuring again. Controls the board profile fixes itself (``AeEnable =
    false``) are left as given.
    """

    def __init__(self, index: int, width: int, height: int, fps: int, controls: dict[str, Any],
                 lock_after: float = 0.0, held: dict[str, Any] | None = None) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                              "python3-picamera2' and make the venv with --system-site-packages "
                              "(hardware/pi/setup.sh)") from None
        self._cam = Picamera2(index)
        try:
            config = self._cam.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"}, buffer_count=2,
                controls={**({"FrameRate": fps} if fps else {}), **controls})
            self._cam.configure(config)
            self._cam.start()
            held = {} if held is None else held
            if "controls" in held:
                self._cam.set_controls(held["controls"])
            elif lock_after > 0 and controls.get("AeEnable", True) and controls.get("AwbEnable", True):
                held.update(self._lock(lock_after))
        except Exception:
            self._cam.close()
            raise

    def _lock(self, settle_s: float) -> dict[str, Any]:
        """Let AE/AWB settle for ``settle_s`` s (frames keep flowing), then fix what they reached."""
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            self._cam.capture_array("main")
        md = self._cam.capture_metadata()
        missing = [k for k in LOCK_KEYS if md.get(k) is None]
        if missing:  # lock all or nothing: a half-locked camera is the trap above
            log.warning("camera settings not locked: the frame metadata has no %s", ", ".join(missing))
            return {"locked": False, "missing": missing}
        locked = {"AeEnable": False, "AwbEnable": False, "ExposureTime": int(md["ExposureTime"]),
                  "AnalogueGain": float(md["AnalogueGain"]), "ColourGains": tuple(float(g) for g in md["ColourGains"])}
        self._cam.set_controls(locked)
        log.info("camera locked after %.1f s: exposure %d us, analogue gain %.2f, colour gains %.2f/%.2f", settle_s,
                 locked["ExposureTime"], locked["AnalogueGain"], *locked["ColourGains"])
        return {"locked": True, "settle_s": settle_s, "controls": locked}

    def read(self) -> tuple[bool, Any]:
        return True, self._cam.capture_array("main")

    def release(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()


# -- the --source parser -------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraSettings:
    width: int = 1280
    height: int = 960
    fps: int = 10
    give_up_after: float = 30.0  # seconds without a frame before a live camera is given up
    controls: dict[str, Any] = field(default_factory=dict)  # picamera2 controls (fixed exposure, white balance)
    lock_after: float = 2.0  # picamera2: lock exposure, gain and white balance after this many s (0: never)


def _has_gstreamer() -> bool:
    import cv2

    return bool(re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))


def image_files(folder: Path) -> list[Path]:
    """The entries of a folder (not recursive) named like images, in natural name order.

    Entries that are not regular files (a folder named ``x.png``, a FIFO) stay in the list: the
    source skips each with one line saying what it is, instead of passing over it in silence.
    """
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)


def open_source(spec: str, settings: CameraSettings | None = None, *,
                max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> FrameSource:
    """Parse a ``--source`` value and open it (see the module docstring for the forms).

    ``max_pixels`` / ``max_side``: file frames over these are refused from their header, before decoding.
    """
    cam = settings or CameraSettings()
    if spec == "picam" or spec.startswith("picam:"):
        index = _int_after(spec, "picam:", 0)
        held: dict[str, Any] = {}  # the locked settings, kept for a reopen and recorded in the run
        source = CameraSource(lambda: _PicamCapture(index, cam.width, cam.height, cam.fps, cam.controls,
                                                    cam.lock_after, held), spec, give_up_after=cam.give_up_after)
        source.camera_settings = held
        return source
    if spec.startswith("cam:"):
        index = _int_after(spec, "cam:", None)
        return CameraSource(_opencv_opener(index, "CAP_V4L2", cam.width, cam.height, cam.fps), spec,
                            give_up_after=cam.give_up_after)
    if re.fullmatch(r"/dev/video\d+", spec):
        return CameraSource(_opencv_opener(spec, "CAP_V4L2", cam.width, cam.height, cam.fps), spec,
                            give_up_after=cam.give_up_after)
    if spec.startswith("gst:"):
        if not _has_gstreamer():
            raise SourceError("this OpenCV build has no GStreamer support (pip's opencv-python has none): use a "
                              "USB camera (cam:N) or an OpenCV built with GStreamer (hardware/CAMERA.md)")
        return CameraSource(_opencv_opener(spec[4:], "CAP_GSTREAMER", 0, 0, 0), "gst",
                            give_up_after=cam.give_up_after)
    path = Path(spec)
    limits = {"max_pixels": max_pixels, "max_side": max_side}
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise SourceError(f"no image files in folder {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return FileListSource(files, str(path), **limits)
    if path.is_file():
        ext = path.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            return FileListSource([path], str(path), **limits)
        if ext in VIDEO_EXTENSIONS:
            return VideoFileSource(path, max_pixels=max_pixels)
        raise SourceError(f"{path} is neither an image nor a video file: give a folder of images, a glob, "
                          "a video, cam:N, /dev/videoN, gst:PIPELINE or picam")
    if glob.has_magic(spec):
        files = sorted((Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_EXTENSIONS),
                       key=_natural_key)
        if not files:
            raise SourceError(f"no image files match {spec!r}")
        return FileListSource(files, spec, **limits)
    raise SourceError(f"no such file, folder or camera: {spec!r}: give a folder of images, a glob, a video, "
                      "cam:N, /dev/videoN, gst:PIPELINE or picam")


def _int_after(spec: str, prefix: str, default: int | None) -> int:
    text = spec[len(prefix):] if spec.startswith(prefix) else ""
    if not text and default is not None:
        return default
    if not text.isdigit():
        raise SourceError(f"bad camera source {spec!r}: write {prefix}N with N a camera number, e.g. {prefix}0")
    return int(text)
