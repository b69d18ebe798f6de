"""One image file read as a frame, safely, whatever the folder holds.

:func:`read_frame_file` is what a file source does per file, in this order:

1. anything that is not a regular file (a folder named ``x.png``, a FIFO, a socket, a
   device) is refused before it is opened for reading, and a file that turns into one
   between listing and reading is caught by ``fstat`` on a non-blocking descriptor, so a
   FIFO never blocks the loop;
2. the bytes are read once and hashed: the frame's identity (:mod:`edge_app.resume`);
   a frame the slide already holds is skipped here, before it is decoded;
3. the width and height are read from the file's header (Pillow reads headers lazily)
   and a frame over the pixel limit is refused before a byte of it is decompressed: a
   1.2 MB PNG of 20000 x 20000 pixels would otherwise cost 1.2 GB as an array;
4. Pillow walks the file's structure (:func:`verify_image`: a PNG's chunks and their CRCs, to the
   end), silently, so a truncated or damaged file is refused with Pillow's reason and never reaches
   libpng, which would print ``libpng error: ...`` on the terminal by itself;
5. OpenCV decodes it; a file it still cannot decode is skipped on its return value.

Nothing here redirects file descriptor 2: that is process-wide, and while the reader thread decoded
a frame it swallowed what the other threads logged (issue 23).
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoedge.edge_app.resume import file_key

DEFAULT_MAX_PIXELS = 50_000_000  # a 50 MP colour frame is 150 MB as an array
HEADER_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "PPM")  # Pillow's names for the extensions we accept
BYTES_PER_PIXEL_CAP = 6  # 16-bit RGB, uncompressed: the largest a frame within the pixel limit can be on disk
NOT_REGULAR, UNREADABLE, TOO_LARGE = "not a regular file", "unreadable file", "too large"


@dataclass
class FileRead:
    image: np.ndarray | None  # as stored (16-bit, alpha and grey kept); None: skipped
    key: str | None = None  # the frame's identity (edge_app.resume.file_key); None when not read
    error: str = ""  # why image is None, for the skip line
    problem: str = ""  # the skip's category in the run summary
    committed_as: str | None = None  # the slide already holds this frame under that name: not decoded


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _read_regular(path: Path, max_bytes: int) -> tuple[bytes | None, str, str]:
    """(bytes, error, problem): the whole file, only when it is a regular file of at most ``max_bytes``."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # decided before open(): opening a FIFO or a device can block or act
            return None, f"{_kind(st.st_mode)}, not an image file", NOT_REGULAR
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})", UNREADABLE
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between stat() and open()
            return None, f"{_kind(st.st_mode)}, not an image file", NOT_REGULAR
        if st.st_size > max_bytes:
            return None, (f"too large ({st.st_size / 2**20:.0f} MB file, over the {max_bytes / 2**20:.0f} MB a "
                          "frame within the pixel limit can take)"), TOO_LARGE
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            return None, f"cannot read ({exc.strerror or exc})", UNREADABLE
    if not data:
        return None, "empty file", UNREADABLE
    return data, "", ""


def header_size(data: bytes) -> tuple[int, int] | int | str:
    """(width, height) from an image file's header without decoding it; a pixel count when only that is known
    (Pillow's own decompression-bomb limit, ~179 MP, refused it first); or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=HEADER_FORMATS) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return int(found.group(1)) if found else "too large (over Pillow's decompression-bomb limit)"
    except UnidentifiedImageError:
        return f"not a readable image (corrupt, or not one of {', '.join(HEADER_FORMATS)})"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return f"not a readable image ({' '.join(str(exc).split())[:120] or type(exc).__name__})"


def verify_image(data: bytes) -> str:
    """Why Pillow finds the file's structure broken (a truncated file, a chunk whose CRC does not match), or ""
    when it does not. It reads no pixels (a PNG's compressed data is checked, not inflated) and prints nothing."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=HEADER_FORMATS) as im:
                im.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds (OSError, SyntaxError, struct.error)
        return f"not a readable image ({' '.join(str(exc).split())[:120] or type(exc).__name__})"
    return ""


def read_frame_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    max_side: int | None = None, committed: Callable[[str], str | None] | None = None) -> FileRead:
    """Read, identify, size-check and decode one image file (see the module docstring)."""
    import cv2

    path = Path(path)
    data, error, problem = _read_regular(path, BYTES_PER_PIXEL_CAP * max_pixels + (1 << 20))
    if data is None:
        return FileRead(None, error=error, problem=problem)
    key = file_key(data)
    earlier = committed(key) if committed is not None else None
    if earlier is not None:
        return FileRead(None, key, committed_as=earlier)
    size = header_size(data)
    if isinstance(size, str):
        return FileRead(None, key, size, TOO_LARGE if size.startswith("too large") else UNREADABLE)
    limit = f"{max_pixels / 1e6:g} MP" + (f", {max_side} px a side" if max_side is not None else "")
    if isinstance(size, int):
        return FileRead(None, key, f"too large ({size / 1e6:.0f} MP by its header, over the limit of {limit}; "
                                   "not decoded)", TOO_LARGE)
    w, h = size
    if w * h > max_pixels or (max_side is not None and max(w, h) > max_side):
        return FileRead(None, key, f"too large ({w}x{h} = {w * h / 1e6:.0f} MP by its header, over the limit of "
                                   f"{limit}; not decoded)", TOO_LARGE)
    broken = verify_image(data)
    if broken:
        return FileRead(None, key, broken, UNREADABLE)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return FileRead(None, key, "not a readable image (corrupt or unsupported format)", UNREADABLE)
    return FileRead(image, key)
